package mesh_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

// sidecarAlone starts `kar run` with no component and returns its REST base URL.
func sidecarAlone(t *testing.T, b *devenv.Backend, app string, flags ...string) (*testenv.Proc, string) {
	t.Helper()
	port := testenv.FreePort(t)
	args := append([]string{testenv.KarBin(t), "run", "-app", app, "-runtime_port", strconv.Itoa(port), "-v", "info"}, flags...)
	p := testenv.Start(t, "sidecar", karEnv(b), "", args...)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.WaitHealthy(t, base, 20*time.Second)
	return p, base
}

// testClient bounds every call a test makes, so that a hung call fails the
// test instead of hanging the suite.
var testClient = &http.Client{Timeout: 60 * time.Second}

func do(t *testing.T, method, url string, header http.Header, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// TestServiceCallPassThrough checks that every HTTP method, the query,
// headers, body and the component's status and headers cross the mesh.
func TestServiceCallPassThrough(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	startService(t, b, "server", "pass", "echo", dir, "node", "server.js")
	_, base := sidecarAlone(t, b, "pass")

	for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		t.Run(method, func(t *testing.T) {
			body := ""
			if method != "GET" && method != "OPTIONS" && method != "DELETE" {
				body = "payload-" + method
			}
			resp, got := do(t, method, base+"/kar/v1/service/echo/call/echo/a/b?x=1&y=two&status=201",
				http.Header{"X-Test": {"hdr"}, "Content-Type": {"text/plain"}}, body)
			if resp.StatusCode != 201 {
				t.Fatalf("status %d, body %s", resp.StatusCode, got)
			}
			if resp.Header.Get("X-Echo") != "yes" {
				t.Errorf("response header X-Echo missing: %v", resp.Header)
			}
			var e struct {
				Method, Path, Header string
				Query                map[string]string
				Body                 *string
			}
			if err := json.Unmarshal([]byte(got), &e); err != nil {
				t.Fatalf("bad echo %q: %v", got, err)
			}
			if e.Method != method || e.Path != "/echo/a/b" || e.Query["x"] != "1" || e.Query["y"] != "two" || e.Header != "hdr" {
				t.Errorf("echo = %+v", e)
			}
			if body != "" && (e.Body == nil || *e.Body != body) {
				t.Errorf("body = %v, want %q", e.Body, body)
			}
		})
	}
	// HEAD: status and headers, no body.
	resp, got := do(t, "HEAD", base+"/kar/v1/service/echo/call/echo/h", nil, "")
	if resp.StatusCode != 200 || got != "" {
		t.Errorf("HEAD: %d %q", resp.StatusCode, got)
	}
	// The component's own 404 passes through.
	resp, _ = do(t, "GET", base+"/kar/v1/service/echo/call/no/such/route", nil, "")
	if resp.StatusCode != 404 {
		t.Errorf("component 404 became %d", resp.StatusCode)
	}
}

// TestAsyncPromiseAwait covers Pragma: async (202, delivered later),
// Pragma: promise + /kar/v1/await, and await of an unknown id.
func TestAsyncPromiseAwait(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	server, _ := startService(t, b, "server", "async", "greeter", dir, "node", "server.js")
	_, base := sidecarAlone(t, b, "async")
	url := base + "/kar/v1/service/greeter/call/helloJson"
	js := http.Header{"Content-Type": {"application/json"}}

	resp, got := do(t, "POST", url, http.Header{"Content-Type": {"application/json"}, "Pragma": {"async"}}, `{"name":"Async"}`)
	if resp.StatusCode != 202 {
		t.Fatalf("async: %d %s", resp.StatusCode, got)
	}
	server.WaitOutput(t, "[STDOUT] Hello Async!", 20*time.Second)

	resp, id := do(t, "POST", url, http.Header{"Content-Type": {"application/json"}, "Pragma": {"promise"}}, `{"name":"Promise"}`)
	if resp.StatusCode != 202 || id == "" {
		t.Fatalf("promise: %d %q", resp.StatusCode, id)
	}
	resp, got = do(t, "POST", base+"/kar/v1/await", http.Header{"Content-Type": {"text/plain"}}, id)
	if resp.StatusCode != 200 || got != `{"greetings":"Hello Promise!"}` {
		t.Fatalf("await: %d %s", resp.StatusCode, got)
	}
	resp, got = do(t, "POST", base+"/kar/v1/await", nil, id)
	if resp.StatusCode != 404 {
		t.Errorf("second await of %s: %d %s, want 404", id, resp.StatusCode, got)
	}
	resp, got = do(t, "POST", base+"/kar/v1/await", nil, "no-such-id")
	if resp.StatusCode != 404 || !strings.Contains(got, "no pending request") {
		t.Errorf("await unknown: %d %s", resp.StatusCode, got)
	}
	// Many promises in flight, awaited out of order.
	var ids []string
	for i := 0; i < 20; i++ {
		_, id := do(t, "POST", url, http.Header{"Content-Type": {"application/json"}, "Pragma": {"promise"}}, fmt.Sprintf(`{"name":"P%d"}`, i))
		ids = append(ids, id)
	}
	for i := len(ids) - 1; i >= 0; i-- {
		_, got := do(t, "POST", base+"/kar/v1/await", js, ids[i])
		if want := fmt.Sprintf(`{"greetings":"Hello P%d!"}`, i); got != want {
			t.Errorf("await %d = %s, want %s", i, got, want)
		}
	}
}

// TestBadRequests: unknown routes, oversize bodies and bad await bodies
// get a clear 4xx, and the sidecar keeps serving.
func TestBadRequests(t *testing.T) {
	b := testenv.Backend(t)
	_, base := sidecarAlone(t, b, "bad")
	cases := []struct {
		method, path, body string
		status             int
		says               string
	}{
		{"GET", "/kar/v1/nothing/here", "", 404, "no such route"},
		{"GET", "/kar/v2/service/x/call/y", "", 404, "no such route"},
		{"POST", "/kar/v1/await", "", 400, "request id"},
		{"GET", "/kar/v1/system/information/bogus", "", 400, "sidecars"},
		{"POST", "/kar/v1/service/x/call/y", strings.Repeat("x", 1100000), 413, "larger than"},
	}
	for _, c := range cases {
		resp, got := do(t, c.method, base+c.path, nil, c.body)
		if resp.StatusCode != c.status || !strings.Contains(got, c.says) {
			t.Errorf("%s %s: %d %q, want %d containing %q", c.method, c.path, resp.StatusCode, got, c.status, c.says)
		}
	}
	resp, _ := do(t, "GET", base+"/kar/v1/system/health", nil, "")
	if resp.StatusCode != 200 {
		t.Errorf("health after bad requests: %d", resp.StatusCode)
	}
	// The sidecars listing shows this sidecar, as JSON on request.
	resp, got := do(t, "GET", base+"/kar/v1/system/information/sidecars", http.Header{"Accept": {"application/json"}}, "")
	var info map[string]any
	if resp.StatusCode != 200 || json.Unmarshal([]byte(got), &info) != nil || len(info) != 1 {
		t.Errorf("sidecars: %d %s", resp.StatusCode, got)
	}
	_ = bytes.MinRead
}
