// Package codeengine provisions IBM Cloud Code Engine for kar's
// sidecar-in-container deployments, over the public REST APIs of IAM,
// Resource Controller v2 and Code Engine v2, through
// github.com/IBM/go-sdk-core/v5 (IAM API-key authenticator, BaseService,
// retries, external configuration). No ibmcloud CLI, no jq.
//
// Configuration, in go-sdk-core's usual way: the API key comes from
// IBMCLOUD_API_KEY, the region from IBMCLOUD_REGION (default us-south), and
// every endpoint can be overridden through go-sdk-core's external
// configuration of the service names code_engine and resource_controller
// (CODE_ENGINE_URL, CODE_ENGINE_AUTH_URL, RESOURCE_CONTROLLER_URL,
// RESOURCE_CONTROLLER_AUTH_URL, ..._DISABLE_SSL, ..._ENABLE_RETRIES, ...),
// which is how tests point it at a local double.
//
// Secrets (the API key, Redis and Kafka passwords) never appear in errors,
// logs or progress output.
package codeengine

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/IBM/go-sdk-core/v5/core"
)

// Service names of go-sdk-core's external configuration.
const (
	CodeEngineService         = "code_engine"
	ResourceControllerService = "resource_controller"
)

// APIVersion is the Code Engine API version date sent on every call
// (2.1.0: the version the field names here follow).
const APIVersion = "2024-05-13"

// DefaultRegion is used when IBMCLOUD_REGION is unset.
const DefaultRegion = "us-south"

// DefaultIAMURL is IAM's base URL; the token endpoint is /identity/token below it.
const DefaultIAMURL = "https://iam.cloud.ibm.com"

// Config is what the clients need; FromEnv reads it the usual way.
type Config struct {
	APIKey string // never printed
	Region string
	// PollInterval is how often create/run waits re-read a status.
	PollInterval time.Duration
	// Progress receives one line per status seen while waiting (nil: none).
	Progress func(format string, args ...any)
}

// FromEnv reads IBMCLOUD_API_KEY, IBMCLOUD_REGION and KAR_CE_POLL_INTERVAL.
func FromEnv() (Config, error) {
	cfg := Config{
		APIKey:       strings.TrimSpace(os.Getenv("IBMCLOUD_API_KEY")),
		Region:       strings.TrimSpace(os.Getenv("IBMCLOUD_REGION")),
		PollInterval: 5 * time.Second,
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if s := os.Getenv("KAR_CE_POLL_INTERVAL"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			return cfg, fmt.Errorf("KAR_CE_POLL_INTERVAL=%q: want a duration such as 5s", s)
		}
		cfg.PollInterval = d
	}
	return cfg, nil
}

// ErrNoAPIKey says how to fix a missing API key.
var ErrNoAPIKey = errors.New("no IBM Cloud API key: set IBMCLOUD_API_KEY (create one in the IBM Cloud console under Manage > Access (IAM) > API keys)")

// Client calls Resource Controller and Code Engine for one account and region.
type Client struct {
	cfg Config
	rc  *core.BaseService
	ce  *core.BaseService
}

// New builds the clients. Endpoints: Code Engine
// https://api.<region>.codeengine.cloud.ibm.com/v2, Resource Controller
// https://resource-controller.cloud.ibm.com, IAM https://iam.cloud.ibm.com,
// each overridable through external configuration.
func New(cfg Config) (*Client, error) {
	if cfg.APIKey == "" {
		return nil, ErrNoAPIKey
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 5 * time.Second
	}
	if cfg.Progress == nil {
		cfg.Progress = func(string, ...any) {}
	}
	for _, r := range cfg.Region {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return nil, fmt.Errorf("IBMCLOUD_REGION=%q is not a region name such as us-south or eu-de", cfg.Region)
		}
	}
	ce, err := newService(cfg, CodeEngineService, "https://api."+cfg.Region+".codeengine.cloud.ibm.com/v2")
	if err != nil {
		return nil, err
	}
	rc, err := newService(cfg, ResourceControllerService, "https://resource-controller.cloud.ibm.com")
	if err != nil {
		return nil, err
	}
	return &Client{cfg: cfg, rc: rc, ce: ce}, nil
}

func newService(cfg Config, name, defaultURL string) (*core.BaseService, error) {
	props, err := core.GetServiceProperties(name)
	if err != nil {
		return nil, fmt.Errorf("cannot read the external configuration of %s: %w", name, err)
	}
	authURL := props["AUTH_URL"]
	if authURL == "" {
		authURL = DefaultIAMURL
	}
	b := core.NewIamAuthenticatorBuilder().SetApiKey(cfg.APIKey).SetURL(authURL)
	if v, _ := strconv.ParseBool(strings.TrimSpace(props["AUTH_DISABLE_SSL"])); v {
		b.SetDisableSSLVerification(true)
	}
	auth, err := b.Build()
	if err != nil {
		// go-sdk-core's messages name the property, never its value.
		return nil, fmt.Errorf("bad IBM Cloud API key or IAM settings for %s: %v", name, err)
	}
	svc, err := core.NewBaseService(&core.ServiceOptions{URL: defaultURL, Authenticator: auth})
	if err != nil {
		return nil, fmt.Errorf("cannot set up the %s client: %v", name, err)
	}
	// Retries by default (429 and 5xx, honouring Retry-After); the
	// external configuration (<NAME>_ENABLE_RETRIES=true|false,
	// <NAME>_MAX_RETRIES, <NAME>_RETRY_INTERVAL) overrides them.
	svc.EnableRetries(3, 10*time.Second)
	if err := svc.ConfigureService(name); err != nil {
		return nil, fmt.Errorf("bad external configuration for %s: %v", name, err)
	}
	if v, given := props["ENABLE_RETRIES"]; given && strings.EqualFold(strings.TrimSpace(v), "false") {
		svc.DisableRetries()
	}
	if _, err := url.Parse(svc.GetServiceURL()); err != nil {
		return nil, fmt.Errorf("bad %s_URL: %v", strings.ToUpper(name), err)
	}
	return svc, nil
}

// Region is the Code Engine region the client works in.
func (c *Client) Region() string { return c.cfg.Region }

// APIError is an error answered by an IBM Cloud API.
type APIError struct {
	Op      string // what kar was doing, e.g. "create secret kar.ibm.com.runtime-config"
	Status  int    // HTTP status, 0 when no answer came
	Code    string // the platform's error code, e.g. resource_not_found
	Message string // the platform's message
	Auth    bool   // IAM refused to issue a token
}

func (e *APIError) Error() string {
	if e.Auth {
		return fmt.Sprintf("%s: IBM Cloud IAM refused the API key: %s (check IBMCLOUD_API_KEY)", e.Op, e.Message)
	}
	if e.Status == 0 {
		return fmt.Sprintf("%s: %s", e.Op, e.Message)
	}
	s := fmt.Sprintf("%s: %s (HTTP %d", e.Op, e.Message, e.Status)
	if e.Code != "" {
		s += ", " + e.Code
	}
	return s + ")"
}

// IsNotFound reports a 404 answer.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// request is one API call.
type request struct {
	svc    *core.BaseService
	method string
	path   string            // with {param} placeholders
	params map[string]string // path parameters
	query  url.Values
	header map[string]string
	body   any
}

// call performs r and decodes a JSON answer into result (may be nil).
func (c *Client) call(ctx context.Context, op string, r request, result any) (*core.DetailedResponse, error) {
	b := core.NewRequestBuilder(r.method).WithContext(ctx)
	if _, err := b.ResolveRequestURL(r.svc.GetServiceURL(), r.path, r.params); err != nil {
		return nil, &APIError{Op: op, Message: err.Error()}
	}
	if r.svc == c.ce {
		// Code Engine wants the API version date on every call.
		b.AddQuery("version", APIVersion)
	}
	for k, vs := range r.query {
		for _, v := range vs {
			b.AddQuery(k, v)
		}
	}
	b.AddHeader("Accept", "application/json")
	if r.body != nil {
		if _, err := b.SetBodyContentJSON(r.body); err != nil {
			return nil, &APIError{Op: op, Message: err.Error()}
		}
		ct := "application/json"
		if r.method == http.MethodPatch {
			ct = "application/merge-patch+json"
		}
		b.AddHeader("Content-Type", ct)
	}
	for k, v := range r.header {
		b.AddHeader(k, v)
	}
	req, err := b.Build()
	if err != nil {
		return nil, &APIError{Op: op, Message: err.Error()}
	}
	var out any
	if result != nil {
		out = result
	}
	resp, err := r.svc.Request(req, out)
	if err != nil {
		return resp, toAPIError(op, resp, err)
	}
	return resp, nil
}

func toAPIError(op string, resp *core.DetailedResponse, err error) error {
	msg := err.Error()
	if strings.Contains(msg, "'authenticate' step") {
		// IAM's answer is its JSON body; keep its message only.
		ae := &APIError{Op: op, Auth: true, Message: iamMessage(resp, msg)}
		if resp != nil {
			ae.Status = resp.StatusCode
		}
		return ae
	}
	ae := &APIError{Op: op, Message: msg}
	if resp != nil {
		ae.Status = resp.StatusCode
		if m, ok := resp.GetResultAsMap(); ok {
			if errs, ok := m["errors"].([]any); ok && len(errs) > 0 {
				if e0, ok := errs[0].(map[string]any); ok {
					ae.Code, _ = e0["code"].(string)
				}
			}
		}
	}
	return ae
}

func iamMessage(resp *core.DetailedResponse, fallback string) string {
	if resp != nil {
		if m, ok := resp.GetResultAsMap(); ok {
			if s, ok := m["errorMessage"].(string); ok && s != "" {
				return s
			}
		}
	}
	_, after, found := strings.Cut(fallback, "'authenticate' step:")
	if found {
		return strings.TrimSpace(after)
	}
	return fallback
}

// progress reports one waiting step.
func (c *Client) progress(format string, args ...any) { c.cfg.Progress(format, args...) }

// sleep waits one poll interval or until ctx ends.
func (c *Client) sleep(ctx context.Context) error {
	t := time.NewTimer(c.cfg.PollInterval)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
