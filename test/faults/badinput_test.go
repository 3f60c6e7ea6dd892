package faults_test

// Bad input against a real sidecar (issue 10): malformed REST requests are
// refused with a 4xx and a message, never a 5xx or a crash, nothing they
// carry reaches the component on another route than the one written, and
// the sidecar serves good requests afterwards.

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/httpx"
)

// biComponent is a component in the test process, routed like
// examples/actors-go, that records the request target of every request
// the sidecar sends it and echoes what its router decoded.
type biComponent struct {
	port int
	mu   sync.Mutex
	uris []string
}

func startBIComponent(t *testing.T) *biComponent {
	t.Helper()
	c := &biComponent{}
	mux := http.NewServeMux()
	echo := func(w http.ResponseWriter, r *http.Request, status int) {
		w.Header().Set("Content-Type", "application/kar+json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]any{"value": map[string]string{
			"type": r.PathValue("type"), "id": r.PathValue("id"), "method": r.PathValue("method"), "uri": r.RequestURI}})
	}
	mux.HandleFunc("GET /kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) { echo(w, r, 201) })
	mux.HandleFunc("DELETE /kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) { echo(w, r, 200) })
	mux.HandleFunc("POST /kar/impl/v1/actor/{type}/{id}/{method}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("method") == "tailbad" {
			// A tail call to a method that is not one segment.
			w.Header().Set("Content-Type", "application/kar+json")
			io.WriteString(w, `{"tailCall":true,"value":{"actorType":"T","actorId":"y","path":"/../../admin","payload":"[]"}}`)
			return
		}
		echo(w, r, 200)
	})
	mux.HandleFunc("HEAD /kar/impl/v1/actor/{type}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { echo(w, r, 200) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c.port = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		c.uris = append(c.uris, r.Method+" "+r.RequestURI)
		c.mu.Unlock()
		mux.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return c
}

func (c *biComponent) seen() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.uris...)
}

// startBISidecar runs `kar run` (no command) for the recording component:
// actor type T and service S. It returns the process and the REST base URL.
func startBISidecar(t *testing.T, b *devenv.Backend, app string, c *biComponent) (*testenv.Proc, string) {
	t.Helper()
	port := testenv.FreePort(t)
	p := testenv.Start(t, "sidecar", append(b.Env(), "KAR_LEASE_TTL=1s"), "", testenv.KarBin(t), "run", "-app", app,
		"-actors", "T", "-service", "S", "-app_port", strconv.Itoa(c.port), "-runtime_port", strconv.Itoa(port),
		"-body_timeout", "1s", "-v", "info")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.Eventually(t, 30*time.Second, func() bool {
		status, _ := biDo(t, "POST", base+"/kar/v1/actor/T/ready/call/m", nil, "[]")
		return status == 200
	}, "the sidecar serves actor T")
	return p, base
}

var biClient = &http.Client{Timeout: 60 * time.Second}

// biDo sends a request as written: the path is not cleaned or re-encoded.
func biDo(t *testing.T, method, target string, header http.Header, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := biClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBadInputREST sends malformed requests to a real sidecar.
func TestBadInputREST(t *testing.T) {
	b := testenv.Backend(t)
	comp := startBIComponent(t)
	sidecar, base := startBISidecar(t, b, "badinput", comp)
	js := http.Header{"Content-Type": {"application/json"}}
	ce := http.Header{"Content-Type": {"application/cloudevents+json"}}
	const maxBody = 1000000
	big := strings.Repeat("x", maxBody)

	tests := []struct {
		name, method, path string
		header             http.Header
		body               string
		status             int    // 0: any 4xx
		want               string // in the answer
	}{
		// Path traversal (defect 5).
		{"traversal in id and method", "POST", "/kar/v1/actor/T/%2E%2E/call/..%2F..%2Fadmin", nil, "[]", 400, "one path segment"},
		{"method smuggling a path and a query", "POST", "/kar/v1/actor/T/x/call/%2E%2E%2F%2E%2E%2Fsecret%3Fq=1", nil, "[]", 400, "one path segment"},
		{"method of two segments", "POST", "/kar/v1/actor/T/x/call/a/b", nil, "[]", 400, "one path segment"},
		{"method dot-dot", "POST", "/kar/v1/actor/T/x/call/%2E%2E", nil, "[]", 400, "dot segment"},
		{"literal dot-dot", "POST", "/kar/v1/actor/T/../call/m", nil, "[]", 400, "empty segments"},
		{"empty id segment", "POST", "/kar/v1/actor/T//call/m", nil, "[]", 400, "empty segments"},
		{"service path climbing out", "GET", "/kar/v1/service/S/call/../../actor/T/x/call/m", nil, "", 400, "empty segments"},
		{"delete dot id", "DELETE", "/kar/v1/actor/T/.", nil, "", 400, "empty segments"},
		// Bad names (NUL, invalid UTF-8, control characters).
		{"NUL in actor id", "POST", "/kar/v1/actor/T/a%00/call/m", nil, "[]", 400, "U+0000"},
		{"invalid UTF-8 actor id", "POST", "/kar/v1/actor/T/%FF/call/m", nil, "[]", 400, "UTF-8"},
		{"NUL in actor type", "POST", "/kar/v1/actor/T%00/x/call/m", nil, "[]", 400, "U+0000"},
		{"CR LF in method", "POST", "/kar/v1/actor/T/x/call/m%0D%0AX:%20y", nil, "[]", 400, "control character"},
		{"NUL in reminder id", "PUT", "/kar/v1/actor/T/x/reminders/r%00", js, `{"path":"/m","targetTime":"2120-01-01T00:00:00Z"}`, 400, "U+0000"},
		{"invalid UTF-8 subscription id", "PUT", "/kar/v1/actor/T/x/events/%C3", js, `{"path":"/m","topic":"t"}`, 400, "UTF-8"},
		{"NUL in state key", "PUT", "/kar/v1/actor/T/x/state/k%00", js, `1`, 400, "U+0000"},
		{"NUL in service name", "POST", "/kar/v1/service/S%00/call/x", nil, "", 400, "U+0000"},
		// Bad session.
		{"NUL in session", "POST", "/kar/v1/actor/T/x/call/m?session=s%00", nil, "[]", 400, "session"},
		{"invalid UTF-8 session", "POST", "/kar/v1/actor/T/x/call/m?session=%FE", nil, "[]", 400, "session"},
		// Bad JSON.
		{"arguments an object", "POST", "/kar/v1/actor/T/x/call/m", nil, `{"a":1}`, 400, "JSON array"},
		{"arguments a number", "POST", "/kar/v1/actor/T/x/call/m", nil, `42`, 400, "JSON array"},
		{"arguments cut short", "POST", "/kar/v1/actor/T/x/call/m", nil, `[1, {"a":`, 400, "not valid JSON"},
		{"state value not JSON", "PUT", "/kar/v1/actor/T/x/state/k", js, `{nope`, 400, "JSON"},
		{"reminder not JSON", "PUT", "/kar/v1/actor/T/x/reminders/r", js, `{"path":`, 400, "reminder"},
		{"reminder with a traversal path", "PUT", "/kar/v1/actor/T/x/reminders/r", js, `{"path":"/../../admin","targetTime":"2120-01-01T00:00:00Z"}`, 400, "one path segment"},
		{"subscription not JSON", "PUT", "/kar/v1/actor/T/x/events/s", js, `[`, 400, "subscription"},
		{"subscription with a traversal path", "PUT", "/kar/v1/actor/T/x/events/s", js, `{"path":"../admin","topic":"t"}`, 400, "one path segment"},
		{"await not an id", "POST", "/kar/v1/await", js, ``, 400, "request id"},
		// Bad CloudEvents.
		{"cloudevent not JSON", "POST", "/kar/v1/event/t/cloudevents", ce, `{"specversion":`, 400, ""},
		{"cloudevent without id", "POST", "/kar/v1/event/t/cloudevents", ce, `{"specversion":"1.0","source":"x","type":"y"}`, 400, ""},
		{"cloudevent binary without headers", "POST", "/kar/v1/event/t/cloudevents", js, `{}`, 400, ""},
		{"bad topic name", "POST", "/kar/v1/event/a%20b/publish", js, `{}`, 400, "topic"},
		// Bad Pragma.
		{"unknown Pragma", "POST", "/kar/v1/service/S/call/x", http.Header{"Pragma": {"asynch"}}, "", 400, "Pragma"},
		{"async and promise at once", "POST", "/kar/v1/actor/T/x/call/m", http.Header{"Pragma": {"async", "promise"}}, "[]", 400, "at once"},
		// Oversize bodies, unknown routes, bad methods.
		{"oversize actor arguments", "POST", "/kar/v1/actor/T/x/call/m", nil, "[" + big + "]", 413, "larger than"},
		{"oversize service body", "POST", "/kar/v1/service/S/call/x", nil, big, 413, "larger than"},
		{"oversize event", "POST", "/kar/v1/event/t/publish", js, `"` + big + `"`, 413, "larger than"},
		{"unknown route", "GET", "/kar/v1/nothing/here", nil, "", 404, "no such route"},
		{"unknown version", "POST", "/kar/v2/actor/T/x/call/m", nil, "[]", 404, "no such route"},
		{"GET on a call route", "GET", "/kar/v1/actor/T/x/call/m", nil, "", 404, "no such route"},
		{"PATCH on state", "PATCH", "/kar/v1/actor/T/x/state/k", js, "1", 0, ""},
		{"unknown promise", "POST", "/kar/v1/await", nil, "no-such-request", 404, "no pending request"},
		{"tail call to a bad method", "POST", "/kar/v1/actor/T/x/call/tailbad", nil, "[]", 400, "one path segment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := biDo(t, tt.method, base+tt.path, tt.header, tt.body)
			ok := status == tt.status || tt.status == 0 && status >= 400 && status < 500
			if !ok || !strings.Contains(got, tt.want) || strings.TrimSpace(got) == "" && status != 405 {
				t.Errorf("%s %.80s: %d %.200q; want %d with %q", tt.method, tt.path, status, got, tt.status, tt.want)
			}
		})
	}
	t.Run("malformed HTTP", func(t *testing.T) {
		addr := strings.TrimPrefix(base, "http://")
		for _, raw := range []string{
			"GET /kar/v1/actor/T/%zz/state HTTP/1.1\r\nHost: x\r\n\r\n",
			"POST /kar/v1/actor/T/x/call/m HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n[]",
			"POST /kar/v1/actor/T/x/call/m HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
			"GET /kar/v1/system/health HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("h", 1<<21) + "\r\n\r\n",
		} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(20 * time.Second))
			io.WriteString(conn, raw)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			conn.Close()
			if err != nil || resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("%.60q: %v %v, want a 4xx", raw, resp, err)
			}
		}
	})
	t.Run("slow body", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		io.WriteString(conn, "POST /kar/v1/actor/T/x/call/m HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n[")
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil || resp.StatusCode != http.StatusRequestTimeout {
			t.Fatalf("slow body: %v %v, want 408", resp, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("slow body answered after %v with -body_timeout 1s", d)
		}
	})

	// The sidecar still serves, nothing bad reached the component, and no
	// panic was logged.
	if status, got := biDo(t, "POST", base+"/kar/v1/actor/T/after/call/m", nil, "[1]"); status != 200 || !strings.Contains(got, `"method":"m"`) {
		t.Errorf("good actor call afterwards: %d %s", status, got)
	}
	if status, got := biDo(t, "POST", base+"/kar/v1/service/S/call/after", nil, "x"); status != 200 || !strings.Contains(got, `"uri":"/after"`) {
		t.Errorf("good service call afterwards: %d %s", status, got)
	}
	for _, uri := range comp.seen() {
		if strings.Contains(uri, "admin") || strings.Contains(uri, "secret") || strings.Contains(uri, "%00") || strings.Contains(uri, "/../") {
			t.Errorf("the component got %q", uri)
		}
	}
	if sidecar.Exited() || strings.Contains(sidecar.Output(), "panic") {
		t.Errorf("the sidecar crashed or panicked:\n%s", sidecar.Output())
	}
}

// TestNamesReachComponentAsWritten: names that url.PathEscape left
// dangerous reach the component each as one segment that its router
// decodes back to the name, for a Go ServeMux component and for kar-sdk's
// express routes; a service call's path reaches the service as encoded.
func TestNamesReachComponentAsWritten(t *testing.T) {
	b := testenv.Backend(t)
	comp := startBIComponent(t)
	_, base := startBISidecar(t, b, "names", comp)
	ids := []string{"..", ".", "a/b", "../../admin", "a?b=1#c", "%2E%2E", "ü x", "..%2F"}

	t.Run("Go ServeMux", func(t *testing.T) {
		for _, id := range ids {
			status, got := biDo(t, "POST", base+"/kar/v1/actor/T/"+httpx.EscapeSegment(id)+"/call/who%3Fq=1", nil, "[]")
			var r struct {
				Value struct{ Type, ID, Method, URI string }
			}
			if status != 200 || json.Unmarshal([]byte(got), &r) != nil || r.Value.ID != id || r.Value.Type != "T" || r.Value.Method != "who?q=1" {
				t.Errorf("id %q: %d %s", id, status, got)
			}
		}
	})

	t.Run("service path", func(t *testing.T) {
		for _, p := range []string{"a%2F..%2F..%2Fadmin?x=1", "%2E%2E/admin", "x/%2e%2E/y", "a%20b/c%3Fd"} {
			status, got := biDo(t, "GET", base+"/kar/v1/service/S/call/"+p, nil, "")
			var r struct{ Value struct{ URI string } }
			if status != 200 || json.Unmarshal([]byte(got), &r) != nil || r.Value.URI != "/"+p {
				t.Errorf("service path %q: %d %s, want the component to get /%s", p, status, got, p)
			}
		}
	})

	t.Run("kar-sdk", func(t *testing.T) {
		modules := testenv.KarSDK(t)
		_, file, _, _ := runtime.Caller(0)
		port := testenv.FreePort(t)
		p := testenv.Start(t, "echo", append(b.Env(), "KAR_LEASE_TTL=1s", "NODE_PATH="+modules), filepath.Join(filepath.Dir(file), "testdata"),
			testenv.KarBin(t), "run", "-app", "names", "-actors", "Echo", "-h2c", "-app_port", strconv.Itoa(port), "-v", "info", "node", "names.js")
		p.WaitOutput(t, "names ready", 30*time.Second)
		for _, id := range ids {
			var status int
			var got string
			testenv.Eventually(t, 30*time.Second, func() bool {
				status, got = biDo(t, "POST", base+"/kar/v1/actor/Echo/"+httpx.EscapeSegment(id)+"/call/whoami", nil, "[]")
				return status != 503 && status != 404 || !strings.Contains(got, "no actor type") && status == 404
			}, "actor type Echo served")
			var r struct{ Value struct{ Type, ID string } }
			if status != 200 || json.Unmarshal([]byte(got), &r) != nil || r.Value.ID != id || r.Value.Type != "Echo" {
				t.Errorf("kar-sdk got id %q as: %d %s", id, status, got)
			}
		}
		// A method name express decodes from its one segment.
		status, got := biDo(t, "POST", base+"/kar/v1/actor/Echo/x/call/a%3Fb%20c", nil, "[]")
		if status != 404 || !strings.Contains(got, "no a?b c in actor") {
			t.Errorf("method %q: %d %s", "a?b c", status, got)
		}
	})
}
