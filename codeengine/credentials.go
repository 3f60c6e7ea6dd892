package codeengine

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// ResourceKey is a Resource Controller resource key (service credential).
type ResourceKey struct {
	ID          string         `json:"id"`
	GUID        string         `json:"guid"`
	Name        string         `json:"name"`
	SourceCRN   string         `json:"source_crn"`
	State       string         `json:"state"`
	Credentials map[string]any `json:"credentials"`
}

type resourceKeyList struct {
	RowsCount int           `json:"rows_count"`
	NextURL   *string       `json:"next_url"`
	Resources []ResourceKey `json:"resources"`
}

// ResourceKeys lists the resource keys named name, following next_url.
func (c *Client) ResourceKeys(ctx context.Context, name string) ([]ResourceKey, error) {
	var keys []ResourceKey
	start := ""
	for {
		q := url.Values{"name": {name}, "limit": {"100"}}
		if start != "" {
			q.Set("start", start)
		}
		var page resourceKeyList
		_, err := c.call(ctx, "list resource keys named "+strconv.Quote(name), request{
			svc: c.rc, method: http.MethodGet, path: "/v2/resource_keys", query: q,
		}, &page)
		if err != nil {
			return nil, err
		}
		for _, k := range page.Resources {
			if k.Name == name { // the filter's exactness is not documented
				keys = append(keys, k)
			}
		}
		if page.NextURL == nil || *page.NextURL == "" {
			return keys, nil
		}
		u, err := url.Parse(*page.NextURL)
		if err != nil || u.Query().Get("start") == "" {
			return nil, fmt.Errorf("list resource keys: Resource Controller answered a next_url without a start token")
		}
		start = u.Query().Get("start")
	}
}

// Runtime-config variable names, in the order they are printed.
var RuntimeConfigKeys = []string{
	"REDIS_ENABLE_TLS", "REDIS_CA", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_USER",
	"KAFKA_VERSION", "KAFKA_ENABLE_TLS", "KAFKA_BROKERS", "KAFKA_PASSWORD",
}

// KafkaVersion is the protocol version kar speaks to Event Streams.
const KafkaVersion = "2.8.0"

// RuntimeConfig is the KAFKA_*/REDIS_* settings of the managed services.
type RuntimeConfig map[string]string

// Sorted lists the variables in RuntimeConfigKeys order, then any other.
func (rc RuntimeConfig) Sorted() [][2]string {
	var out [][2]string
	seen := map[string]bool{}
	for _, k := range RuntimeConfigKeys {
		if v, ok := rc[k]; ok {
			out = append(out, [2]string{k, v})
			seen[k] = true
		}
	}
	var rest []string
	for k := range rc {
		if !seen[k] {
			rest = append(rest, k)
		}
	}
	sort.Strings(rest)
	for _, k := range rest {
		out = append(out, [2]string{k, rc[k]})
	}
	return out
}

// RuntimeConfigFromKeys picks, among the keys of one name, the Databases
// for Redis key and the Event Streams key, and extracts the settings kar
// needs from their credentials.
func RuntimeConfigFromKeys(name string, keys []ResourceKey) (RuntimeConfig, error) {
	if len(keys) == 0 {
		return nil, fmt.Errorf("no service credential named %q in this account: create one with that name for your Databases for Redis and your Event Streams instances (Manager role for Event Streams), or check IBMCLOUD_API_KEY's account", name)
	}
	redis, err := pick(name, keys, "databases-for-redis", "Databases for Redis")
	if err != nil {
		return nil, err
	}
	kafka, err := pick(name, keys, "messagehub", "Event Streams")
	if err != nil {
		return nil, err
	}
	rc := RuntimeConfig{"REDIS_ENABLE_TLS": "true", "KAFKA_ENABLE_TLS": "true", "KAFKA_VERSION": KafkaVersion}
	if err := redisSettings(name, redis.Credentials, rc); err != nil {
		return nil, err
	}
	if err := kafkaSettings(name, kafka.Credentials, rc); err != nil {
		return nil, err
	}
	return rc, nil
}

// serviceOf reads the service name of a CRN crn:v1:<cloud>:<type>:<service>:...
func serviceOf(crn string) string {
	parts := strings.Split(crn, ":")
	if len(parts) < 5 {
		return ""
	}
	return parts[4]
}

func pick(name string, keys []ResourceKey, service, what string) (ResourceKey, error) {
	var found []ResourceKey
	var others []string
	for _, k := range keys {
		s := serviceOf(k.SourceCRN)
		if s == service || strings.HasPrefix(s, service+"-") { // e.g. databases-for-redis-gen2
			found = append(found, k)
		} else {
			others = append(others, s)
		}
	}
	switch len(found) {
	case 0:
		return ResourceKey{}, fmt.Errorf("service credential %q has no key for a %s instance (found keys for: %s): create a credential named %q on your %s instance", name, what, strings.Join(others, ", "), name, what)
	case 1:
	default:
		var ids []string
		for _, k := range found {
			ids = append(ids, k.SourceCRN)
		}
		return ResourceKey{}, fmt.Errorf("service credential name %q is used by %d %s keys (instances %s): rename all but one", name, len(found), what, strings.Join(ids, ", "))
	}
	k := found[0]
	if _, redacted := k.Credentials["REDACTED"]; redacted {
		return ResourceKey{}, fmt.Errorf("the %s credential %q is redacted for this API key: it needs the access %v to read service credentials", what, name, k.Credentials["REDACTED"])
	}
	if len(k.Credentials) == 0 {
		return ResourceKey{}, fmt.Errorf("the %s credential %q holds no credentials (one-time credentials cannot be read back): create a new credential", what, name)
	}
	return k, nil
}

func redisSettings(name string, cred map[string]any, rc RuntimeConfig) error {
	bad := func(path string) error {
		return fmt.Errorf("the Databases for Redis credential %q lacks %s: is it a Redis service key?", name, path)
	}
	rediss, ok := dig(cred, "connection", "rediss").(map[string]any)
	if !ok {
		return bad("connection.rediss")
	}
	hosts, _ := rediss["hosts"].([]any)
	if len(hosts) == 0 {
		return bad("connection.rediss.hosts")
	}
	h0, _ := hosts[0].(map[string]any)
	host, _ := h0["hostname"].(string)
	if host == "" {
		return bad("connection.rediss.hosts[0].hostname")
	}
	port, ok := number(h0["port"])
	if !ok {
		return bad("connection.rediss.hosts[0].port")
	}
	password, _ := dig(rediss, "authentication", "password").(string)
	if password == "" {
		return bad("connection.rediss.authentication.password")
	}
	ca, _ := dig(rediss, "certificate", "certificate_base64").(string)
	if ca == "" {
		return bad("connection.rediss.certificate.certificate_base64")
	}
	user, _ := dig(rediss, "authentication", "username").(string)
	rc["REDIS_HOST"] = host
	rc["REDIS_PORT"] = port
	rc["REDIS_PASSWORD"] = password
	rc["REDIS_CA"] = ca
	rc["REDIS_USER"] = user
	return nil
}

func kafkaSettings(name string, cred map[string]any, rc RuntimeConfig) error {
	var brokers []string
	if list, ok := cred["kafka_brokers_sasl"].([]any); ok {
		for _, b := range list {
			if s, ok := b.(string); ok && s != "" {
				brokers = append(brokers, s)
			}
		}
	}
	if len(brokers) == 0 {
		if s, ok := cred["bootstrap_endpoints"].(string); ok {
			for _, b := range strings.Split(s, ",") {
				if b = strings.TrimSpace(b); b != "" {
					brokers = append(brokers, b)
				}
			}
		}
	}
	if len(brokers) == 0 {
		return fmt.Errorf("the Event Streams credential %q lacks kafka_brokers_sasl and bootstrap_endpoints: is it an Event Streams service key?", name)
	}
	var password string
	for _, k := range []string{"password", "api_key", "apikey"} {
		if s, ok := cred[k].(string); ok && s != "" {
			password = s
			break
		}
	}
	if password == "" {
		return fmt.Errorf("the Event Streams credential %q lacks password (and api_key): is it an Event Streams service key?", name)
	}
	rc["KAFKA_BROKERS"] = strings.Join(brokers, ",")
	rc["KAFKA_PASSWORD"] = password
	// kar's default user is token; only a different one needs saying.
	if u, ok := cred["user"].(string); ok && u != "" && u != "token" {
		rc["KAFKA_USERNAME"] = u
	}
	return nil
}

func dig(m map[string]any, path ...string) any {
	var cur any = m
	for _, p := range path {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}

func number(v any) (string, bool) {
	switch t := v.(type) {
	case int:
		return number(float64(t))
	case float64:
		if t <= 0 || t > 65535 || t != float64(int(t)) {
			return "", false
		}
		return strconv.Itoa(int(t)), true
	case string:
		n, err := strconv.Atoi(t)
		if err != nil || n <= 0 || n > 65535 {
			return "", false
		}
		return t, true
	}
	return "", false
}

// RuntimeConfigFor looks the credential up and extracts the settings.
func (c *Client) RuntimeConfigFor(ctx context.Context, credential string) (RuntimeConfig, error) {
	if strings.TrimSpace(credential) == "" {
		return nil, fmt.Errorf("no service credential name given")
	}
	keys, err := c.ResourceKeys(ctx, credential)
	if err != nil {
		return nil, err
	}
	return RuntimeConfigFromKeys(credential, keys)
}
