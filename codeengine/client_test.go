package codeengine

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/codeengine/cetest"
	"github.com/kar-runtime/kar/entrypoint"
)

// newClient points a client at the double through external configuration,
// exactly as a user's environment would.
func newClient(t *testing.T, d *cetest.Double, apiKey string) *Client {
	t.Helper()
	for _, kv := range d.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	t.Setenv("IBMCLOUD_API_KEY", apiKey)
	cfg, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	cfg.PollInterval = time.Millisecond
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func testApp() entrypoint.App {
	return entrypoint.App{
		Component: entrypoint.Component{App: "shop", Service: "cart", Actors: []string{"Cart", "Order"}, Port: 8080, Verbose: "info"},
		Name:      "cart", Image: "us.icr.io/kar/cart:1", Scale: 3,
		Env: []entrypoint.Var{{Name: "GREETING", Value: "hello world"}, {Name: "MODE", Value: "fast"}},
	}
}

func TestProjectCreateWaitsUntilActive(t *testing.T) {
	d := cetest.New(t, "good-key")
	d.ProjectSteps = 3
	var progress []string
	c := newClient(t, d, "good-key")
	c.cfg.Progress = func(f string, a ...any) { progress = append(progress, f) }
	d.AddProject("other") // pagination: the new project is on page 2
	p, err := c.CreateProject(ctx(t), "kar-test", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != "active" || p.Name != "kar-test" {
		t.Fatalf("project %+v", p)
	}
	if len(progress) < 3 {
		t.Errorf("progress %q: want the creating steps shown", progress)
	}
	// Creating again finds it.
	p2, err := c.CreateProject(ctx(t), "kar-test", "", true)
	if err != nil || p2.ID != p.ID {
		t.Fatalf("second create: %+v %v", p2, err)
	}
	for _, call := range d.Calls() {
		if strings.HasPrefix(call.Path, "/v2/projects") && call.Query.Get("version") != APIVersion {
			t.Errorf("%s %s without version", call.Method, call.Path)
		}
	}
}

func TestProjectCreationFails(t *testing.T) {
	d := cetest.New(t, "good-key")
	d.FailProjects["doomed"] = true
	c := newClient(t, d, "good-key")
	_, err := c.CreateProject(ctx(t), "doomed", "", true)
	if err == nil || !strings.Contains(err.Error(), "creation_failed") {
		t.Fatalf("error = %v", err)
	}
}

func TestBadAPIKey(t *testing.T) {
	d := cetest.New(t, "good-key")
	c := newClient(t, d, "wrong-key")
	_, err := c.Projects(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "IAM refused the API key") || !strings.Contains(err.Error(), "Provided API key could not be found") {
		t.Fatalf("error = %v", err)
	}
	if strings.Contains(err.Error(), "wrong-key") {
		t.Fatalf("error %q holds the API key", err)
	}
}

func TestSecretCreateThenReplace(t *testing.T) {
	d := cetest.New(t, "k")
	d.AddProject("p")
	c := newClient(t, d, "k")
	p, err := c.ActiveProject(ctx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	created, err := c.PutGenericSecret(ctx(t), p, "s1", map[string]string{"A": "1"})
	if err != nil || !created {
		t.Fatalf("create: %v %v", created, err)
	}
	created, err = c.PutGenericSecret(ctx(t), p, "s1", map[string]string{"B": "2 3"})
	if err != nil || created {
		t.Fatalf("replace: %v %v", created, err)
	}
	s := d.Secret("p", "s1")
	if data := s["data"].(map[string]any); data["B"] != "2 3" || data["A"] != nil {
		t.Fatalf("secret data %v", data)
	}
	var puts int
	for _, call := range d.Calls() {
		if call.Method == http.MethodPut {
			puts++
			if call.IfMatch != "1" || call.ContentType != "application/json" {
				t.Errorf("PUT with If-Match %q, Content-Type %q", call.IfMatch, call.ContentType)
			}
		}
	}
	if puts != 1 {
		t.Errorf("%d PUTs", puts)
	}
}

func TestEnvSplitsLiteralsFromSecret(t *testing.T) {
	vars, secret := Env(testApp())
	if vars[0].Type != "secret_full_reference" || vars[0].Reference != entrypoint.RuntimeConfigSecret {
		t.Fatalf("first entry %+v", vars[0])
	}
	if vars[1].Reference != EnvSecretName("cart") {
		t.Fatalf("second entry %+v", vars[1])
	}
	lits := map[string]string{}
	for _, v := range vars[2:] {
		lits[v.Name] = v.Value
	}
	for k, v := range map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "shop", "KAR_APP_PORT": "8080", "KAR_SERVICE": "cart", "KAR_VERBOSE": "info", "MODE": "fast"} {
		if lits[k] != v {
			t.Errorf("literal %s = %q, want %q", k, lits[k], v)
		}
	}
	if secret["KAR_ACTORS"] != "Cart,Order" || secret["GREETING"] != "hello world" || len(secret) != 2 {
		t.Errorf("env secret %v", secret)
	}
	a := testApp()
	a.Actors, a.Env = []string{"Cart"}, nil
	if _, secret := Env(a); secret != nil {
		t.Errorf("env secret %v for literal-only values", secret)
	}
}

func TestRunAppCreateUpdateFail(t *testing.T) {
	d := cetest.New(t, "k")
	d.AddProject("p")
	c := newClient(t, d, "k")
	p, _ := c.ActiveProject(ctx(t), "p")
	if _, err := c.RunApp(ctx(t), p, testApp(), true); err == nil || !strings.Contains(err.Error(), "kar-ce-project-enable.sh") {
		t.Fatalf("run in a project not enabled: %v", err)
	}
	if _, err := c.PutGenericSecret(ctx(t), p, entrypoint.RuntimeConfigSecret, map[string]string{"REDIS_HOST": "h"}); err != nil {
		t.Fatal(err)
	}
	a, err := c.RunApp(ctx(t), p, testApp(), true)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != "ready" || a.StatusDetails.LatestReadyRevision != "cart-00001" || a.Endpoint != "" {
		t.Fatalf("app %+v", a)
	}
	got := d.App("p", "cart")
	for _, k := range []string{"scale_min_instances", "scale_max_instances", "scale_initial_instances"} {
		if got[k] != 3.0 {
			t.Errorf("%s = %v", k, got[k])
		}
	}
	if got["managed_domain_mappings"] != "local" || got["image_port"] != 8080.0 {
		t.Errorf("app %v", got)
	}

	// Update: PATCH with If-Match, new revision, externalized, no env secret left.
	up := testApp()
	up.Scale, up.Externalize, up.Env, up.Actors = 2, true, nil, []string{"Cart"}
	a, err = c.RunApp(ctx(t), p, up, true)
	if err != nil {
		t.Fatal(err)
	}
	if a.StatusDetails.LatestReadyRevision != "cart-00002" || a.Endpoint == "" {
		t.Fatalf("updated app %+v", a)
	}
	if d.Secret("p", EnvSecretName("cart")) != nil {
		t.Error("the env secret the app no longer uses is still there")
	}
	var patched bool
	for _, call := range d.Calls() {
		if call.Method == http.MethodPatch {
			patched = true
			if call.ContentType != "application/merge-patch+json" || call.IfMatch == "" {
				t.Errorf("PATCH Content-Type %q If-Match %q", call.ContentType, call.IfMatch)
			}
		}
	}
	if !patched {
		t.Error("update did not PATCH")
	}

	// A failing update keeps the old revision serving: still an error.
	d.FailImages["us.icr.io/kar/broken:1"] = "fetch_image_failed_unknown_manifest"
	up.Image = "us.icr.io/kar/broken:1"
	_, err = c.RunApp(ctx(t), p, up, true)
	if err == nil || !strings.Contains(err.Error(), "fetch_image_failed_unknown_manifest") || !strings.Contains(err.Error(), "ready_but_latest_revision_failed") {
		t.Fatalf("error = %v", err)
	}
	found, err := c.DeleteApp(ctx(t), p, "cart")
	if err != nil || !found || d.App("p", "cart") != nil {
		t.Fatalf("delete: %v %v", found, err)
	}
}

func TestRetriesOnThrottling(t *testing.T) {
	d := cetest.New(t, "k")
	d.AddProject("p")
	newClient(t, d, "k") // sets the double's environment
	// The double's environment turns retries off; without it they are on
	// by default (3 retries).
	os.Unsetenv("CODE_ENGINE_ENABLE_RETRIES")
	cfg, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	client, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d.Throttle(2)
	if _, err := client.FindProject(ctx(t), "p"); err != nil {
		t.Fatalf("after two 429s: %v", err)
	}
	d.Throttle(10)
	_, err = client.FindProject(ctx(t), "p")
	if err == nil || !strings.Contains(err.Error(), "HTTP 429") {
		t.Fatalf("error = %v, want the 429 after the retries", err)
	}
	var throttled int
	for _, call := range d.Calls() {
		if call.Status == http.StatusTooManyRequests {
			throttled++
		}
	}
	if throttled != 2+4 {
		t.Errorf("%d throttled calls, want 6 (2, then 1 + 3 retries)", throttled)
	}
}
