package codeengine

import (
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/autoscale/autoscaletest"
	"github.com/kar-runtime/kar/codeengine/cetest"
	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/internal/testenv"
)

// scaledApp makes project p with the app cart (fixed scale 3) in the double.
func scaledApp(t *testing.T, d *cetest.Double, key string) (*Client, Project) {
	t.Helper()
	d.AddProject("p")
	c := newClient(t, d, key)
	p, err := c.ActiveProject(ctx(t), "p")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.PutGenericSecret(ctx(t), p, entrypoint.RuntimeConfigSecret, map[string]string{"REDIS_HOST": "h"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RunApp(ctx(t), p, testApp(), true); err != nil {
		t.Fatal(err)
	}
	return c, p
}

// patches are the PATCHes of app cart the double answered, with their If-Match.
func patches(d *cetest.Double) []cetest.Call {
	var out []cetest.Call
	for _, c := range d.Calls() {
		if c.Method == http.MethodPatch && strings.HasSuffix(c.Path, "/apps/cart") {
			out = append(out, c)
		}
	}
	return out
}

// TestSetScale: the scale fields are PATCHed with the entity tag just
// read; a scale the app has already is not written again; bad values and
// missing apps are errors.
func TestSetScale(t *testing.T) {
	d := cetest.New(t, "k")
	c, p := scaledApp(t, d, "k")
	before := len(patches(d))
	_, etag, err := c.GetApp(ctx(t), p, "cart")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.SetScale(ctx(t), p, "cart", 0, 5); err != nil {
		t.Fatal(err)
	}
	if got := d.App("p", "cart"); got["scale_min_instances"] != 0.0 || got["scale_max_instances"] != 5.0 || got["image_reference"] != testApp().Image {
		t.Errorf("app after SetScale(0, 5): %v", got)
	}
	ps := patches(d)
	if len(ps) != before+1 || ps[len(ps)-1].IfMatch != etag || ps[len(ps)-1].Status != http.StatusOK ||
		ps[len(ps)-1].ContentType != "application/merge-patch+json" {
		t.Fatalf("PATCHes %+v, want one more with If-Match %s", ps, etag)
	}
	if _, err := c.SetScale(ctx(t), p, "cart", 0, 5); err != nil || len(patches(d)) != before+1 {
		t.Errorf("same scale again: %v, %d PATCHes (want none more)", err, len(patches(d))-before-1)
	}
	for _, bad := range [][2]int{{-1, 3}, {4, 3}, {0, 0}} {
		if _, err := c.SetScale(ctx(t), p, "cart", bad[0], bad[1]); err == nil {
			t.Errorf("SetScale(%d, %d): no error", bad[0], bad[1])
		}
	}
	if _, err := c.SetScale(ctx(t), p, "nope", 1, 2); !IsNotFound(err) {
		t.Errorf("missing app: %v", err)
	}
}

// TestAutoscaleCLI: `kar ce autoscale`, a process, against the double and
// a real mesh: the idle app goes to 0 instances; requests held for its
// service (no replica) take it to ceil(held / target); once a replica has
// answered them it returns to 0 after the cooldown. Every write is a PATCH
// with If-Match. Bad credentials are a clear error, without the key.
func TestAutoscaleCLI(t *testing.T) {
	const key = "test-Autoscale-Key"
	b := testenv.Backend(t)
	d := cetest.New(t, key)
	scaledApp(t, d, key)
	kar := cetest.KarBinary(t)
	const app = "ceauto"
	args := []string{"ce", "autoscale", "-project", "p", "-app", app, "-name", "cart", "-service", "worker",
		"-min", "0", "-max", "4", "-target", "2", "-poll", "100ms", "-scale_down_window", "500ms", "-cooldown", "1s"}

	bad := cetest.Run(t, append(append(b.Env(), d.Env()...), "IBMCLOUD_API_KEY=wrong-Key-2"), kar, args...)
	if bad.Code != 1 || !strings.Contains(bad.Stderr, "IAM refused the API key") || strings.Contains(bad.Stderr+bad.Stdout, "wrong-Key-2") {
		t.Errorf("bad key: exit %d\nstdout %s\nstderr %s", bad.Code, bad.Stdout, bad.Stderr)
	}
	if r := cetest.Run(t, append(b.Env(), d.Env()...), kar, "ce", "autoscale", "-project", "p", "-app", app, "-name", "cart"); r.Code != 2 ||
		!strings.Contains(r.Stderr, "-service S or -actors T") {
		t.Errorf("no target: exit %d, stderr %s", r.Code, r.Stderr)
	}

	scaler := testenv.Start(t, "ce-autoscale", append(b.Env(), d.Env()...), "", append([]string{kar}, args...)...)
	scale := func() (float64, float64) {
		a := d.App("p", "cart")
		return a["scale_min_instances"].(float64), a["scale_max_instances"].(float64)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { min, max := scale(); return min == 0 && max == 4 },
		"idle: 0 instances, at most 4 (last %v)", d.App("p", "cart"))

	caller := autoscaletest.Sidecar(t, b, "caller", "-app", app, "-missing_component_timeout", "0")
	for range 3 {
		autoscaletest.Tell(t, caller, "worker")
	}
	testenv.Eventually(t, 20*time.Second, func() bool { min, _ := scale(); return min == 2 },
		"3 held, 2 per instance: 2 instances (last %v)", d.App("p", "cart"))

	autoscaletest.Sidecar(t, b, "worker", "-app", app, "-service", "worker", "-app_port", strconv.Itoa(autoscaletest.Component(t)))
	testenv.Eventually(t, 20*time.Second, func() bool { min, _ := scale(); return min == 0 },
		"answered: back to 0 after the cooldown (last %v)", d.App("p", "cart"))

	if err := scaler.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := scaler.Wait(10 * time.Second); err != nil || code != 0 {
		t.Errorf("kar ce autoscale after SIGTERM: exit %d, %v\n%s", code, err, scaler.Output())
	}
	ps := patches(d)
	if len(ps) < 3 { // 0 (from 3), 2, 0: RunApp created the app with a POST
		t.Errorf("%d PATCHes, want at least 3 scalings", len(ps))
	}
	for _, c := range ps {
		if c.IfMatch == "" || c.Status != http.StatusOK {
			t.Errorf("PATCH %s: If-Match %q, status %d", c.Path, c.IfMatch, c.Status)
		}
	}
	if out := scaler.Output(); strings.Contains(out, key) {
		t.Error("kar ce autoscale printed the API key")
	}
}
