package codeengine

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/kar-runtime/kar/entrypoint"
)

// EnvVar is one entry of an app's run_env_variables.
type EnvVar struct {
	Type      string `json:"type"`
	Name      string `json:"name,omitempty"`
	Value     string `json:"value,omitempty"`
	Reference string `json:"reference,omitempty"`
}

// App is the part of a Code Engine app kar reads back.
type App struct {
	Name                  string   `json:"name"`
	ImageReference        string   `json:"image_reference"`
	EntityTag             string   `json:"entity_tag"`
	Status                string   `json:"status"`
	Endpoint              string   `json:"endpoint"`
	EndpointInternal      string   `json:"endpoint_internal"`
	ManagedDomainMappings string   `json:"managed_domain_mappings"`
	ScaleMinInstances     int      `json:"scale_min_instances"`
	ScaleMaxInstances     int      `json:"scale_max_instances"`
	RunEnvVariables       []EnvVar `json:"run_env_variables"`
	StatusDetails         struct {
		LatestCreatedRevision string `json:"latest_created_revision"`
		LatestReadyRevision   string `json:"latest_ready_revision"`
		Reason                string `json:"reason"`
	} `json:"status_details"`
}

// Revision is the part of an app revision kar reads back.
type Revision struct {
	Name          string `json:"name"`
	Status        string `json:"status"`
	StatusDetails struct {
		Reason string `json:"reason"`
	} `json:"status_details"`
}

// literalRE is Code Engine's documented pattern for a literal env value.
var literalRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// EnvSecretName is the per-app generic secret holding the env values Code
// Engine would not take as literals (spaces, commas, '=', ...).
func EnvSecretName(app string) string { return "kar.ibm.com.env." + app }

// Env splits an app's environment between literal entries and the per-app
// env secret, and references the runtime-config secret first.
func Env(a entrypoint.App) (vars []EnvVar, secret map[string]string) {
	vars = []EnvVar{{Type: "secret_full_reference", Reference: entrypoint.RuntimeConfigSecret}}
	var lits []EnvVar
	for _, v := range a.AllEnv() {
		if literalRE.MatchString(v.Value) && len(v.Value) <= 253 {
			lits = append(lits, EnvVar{Type: "literal", Name: v.Name, Value: v.Value})
			continue
		}
		if secret == nil {
			secret = map[string]string{}
		}
		secret[v.Name] = v.Value
	}
	if secret != nil {
		vars = append(vars, EnvVar{Type: "secret_full_reference", Reference: EnvSecretName(a.Name)})
	}
	return append(vars, lits...), secret
}

// AppBody is the create body (withName) or the merge patch (without) of app.
func AppBody(a entrypoint.App, withName bool) map[string]any {
	vars, _ := Env(a)
	mapping := "local"
	if a.Externalize {
		mapping = "local_public"
	}
	// Code Engine's autoscaler cannot see Kafka load: a fixed scale, or
	// bounds within which kar ce autoscale sets the minimum (the scale).
	minS, maxS, initial := a.Bounds()
	b := map[string]any{
		"image_reference":         a.Image,
		"image_port":              a.PortOrDefault(),
		"managed_domain_mappings": mapping,
		"scale_min_instances":     minS,
		"scale_max_instances":     maxS,
		"scale_initial_instances": initial,
		"run_env_variables":       vars,
	}
	if withName {
		b["name"] = a.Name
		if a.RegistrySecret != "" {
			b["image_secret"] = a.RegistrySecret
		}
	} else {
		// A merge patch clears with null.
		b["image_secret"] = nil
		if a.RegistrySecret != "" {
			b["image_secret"] = a.RegistrySecret
		}
	}
	return b
}

func appPath(p Project, name string) (string, map[string]string) {
	return "/projects/{project_id}/apps/{name}", map[string]string{"project_id": p.ID, "name": name}
}

// GetApp reads an app and its ETag.
func (c *Client) GetApp(ctx context.Context, p Project, name string) (App, string, error) {
	var a App
	path, params := appPath(p, name)
	resp, err := c.call(ctx, "get app "+name, request{svc: c.ce, method: http.MethodGet, path: path, params: params}, &a)
	if err != nil {
		return a, "", err
	}
	etag := resp.Headers.Get("ETag")
	if etag == "" {
		etag = a.EntityTag
	}
	return a, etag, nil
}

// RunApp creates the app, or updates it (PATCH with If-Match) when it
// exists, after putting its env secret; unless wait is false it then waits
// until the new revision is ready.
func (c *Client) RunApp(ctx context.Context, p Project, a entrypoint.App, wait bool) (App, error) {
	if err := a.Validate(); err != nil {
		return App{}, err
	}
	if _, _, err := c.GetSecret(ctx, p, entrypoint.RuntimeConfigSecret); err != nil {
		if IsNotFound(err) {
			return App{}, fmt.Errorf("project %q is not enabled for kar (no secret %s): run `kar-ce-project-enable.sh <service-credential>` first", p.Name, entrypoint.RuntimeConfigSecret)
		}
		return App{}, err
	}
	if a.RegistrySecret != "" {
		if _, _, err := c.GetSecret(ctx, p, a.RegistrySecret); IsNotFound(err) {
			return App{}, fmt.Errorf("-registry-secret %s: no such secret in project %q (create a registry secret with that name first)", a.RegistrySecret, p.Name)
		} else if err != nil {
			return App{}, err
		}
	}
	_, secret := Env(a)
	if secret != nil {
		if _, err := c.PutGenericSecret(ctx, p, EnvSecretName(a.Name), secret); err != nil {
			return App{}, err
		}
	}
	_, etag, err := c.GetApp(ctx, p, a.Name)
	var app App
	switch {
	case IsNotFound(err):
		_, err = c.call(ctx, "create app "+a.Name, request{
			svc: c.ce, method: http.MethodPost, path: "/projects/{project_id}/apps",
			params: map[string]string{"project_id": p.ID}, body: AppBody(a, true),
		}, &app)
		if err != nil {
			return app, err
		}
		c.progress("app %s created", a.Name)
	case err != nil:
		return app, err
	default:
		path, params := appPath(p, a.Name)
		_, err = c.call(ctx, "update app "+a.Name, request{
			svc: c.ce, method: http.MethodPatch, path: path, params: params,
			header: map[string]string{"If-Match": etag}, body: AppBody(a, false),
		}, &app)
		if err != nil {
			return app, err
		}
		c.progress("app %s updated", a.Name)
	}
	if secret == nil {
		// A previous run may have left an env secret the app no longer uses.
		if _, err := c.DeleteSecret(ctx, p, EnvSecretName(a.Name)); err != nil {
			return app, err
		}
	}
	if !wait {
		return app, nil
	}
	return c.WaitApp(ctx, p, app)
}

// WaitApp polls the app until its latest revision is ready, and fails
// with the platform's reason when it cannot become ready.
func (c *Client) WaitApp(ctx context.Context, p Project, app App) (App, error) {
	begin := time.Now()
	want := app.StatusDetails.LatestCreatedRevision
	for {
		switch {
		case app.Status == "ready" && (want == "" || app.StatusDetails.LatestReadyRevision == want):
			c.progress("app %s is ready (%s)", app.Name, since(begin))
			return app, nil
		case app.Status == "failed" || app.Status == "warning" ||
			app.StatusDetails.Reason == "ready_but_latest_revision_failed":
			return app, c.deployError(ctx, p, app)
		}
		c.progress("app %s: %s (%s, %s)", app.Name, app.Status, app.StatusDetails.Reason, since(begin))
		if err := c.sleep(ctx); err != nil {
			return app, fmt.Errorf("gave up waiting for app %q to become ready (last status %s, %s): %w", app.Name, app.Status, app.StatusDetails.Reason, err)
		}
		var err error
		if app, _, err = c.GetApp(ctx, p, app.Name); err != nil {
			return app, err
		}
	}
}

// deployError explains a failed deployment with the revision's reason.
func (c *Client) deployError(ctx context.Context, p Project, app App) error {
	msg := fmt.Sprintf("app %q failed to deploy: status %s, reason %s", app.Name, app.Status, app.StatusDetails.Reason)
	if rev := app.StatusDetails.LatestCreatedRevision; rev != "" {
		var r Revision
		_, err := c.call(ctx, "get revision "+rev, request{
			svc: c.ce, method: http.MethodGet, path: "/projects/{project_id}/apps/{app}/revisions/{name}",
			params: map[string]string{"project_id": p.ID, "app": app.Name, "name": rev},
		}, &r)
		if err == nil && r.StatusDetails.Reason != "" {
			msg += fmt.Sprintf("; revision %s: %s %s", rev, r.Status, r.StatusDetails.Reason)
			if hint := reasonHint(r.StatusDetails.Reason); hint != "" {
				msg += " (" + hint + ")"
			}
		}
	}
	return fmt.Errorf("%s", msg)
}

func reasonHint(reason string) string {
	switch {
	case strings.HasPrefix(reason, "fetch_image_failed"), reason == "image_pull_back_off", reason == "invalid_tar_header_image_pull_err":
		return "check -image, and -registry-secret for a private registry"
	case strings.HasPrefix(reason, "container_failed_exit_code"):
		return "the container exited; read its logs, e.g. for a bad KAR_/KAFKA_/REDIS_ setting"
	case reason == "initial_scale_never_achieved", reason == "deploying_waiting_for_resources":
		return "not enough resources for -scale instances in the project"
	}
	return ""
}

// DeleteApp deletes the app and its env secret; found is false when the
// app did not exist.
func (c *Client) DeleteApp(ctx context.Context, p Project, name string) (found bool, err error) {
	path, params := appPath(p, name)
	_, err = c.call(ctx, "delete app "+name, request{svc: c.ce, method: http.MethodDelete, path: path, params: params}, nil)
	found = err == nil
	if err != nil && !IsNotFound(err) {
		return false, err
	}
	if _, err := c.DeleteSecret(ctx, p, EnvSecretName(name)); err != nil {
		return found, err
	}
	return found, nil
}
