package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// testServer serves a Server with no mesh, as the sidecar does (Serve:
// calls over HTTP/1.1 on the fast path, the rest on net/http): the
// requests sent to it are refused before anything goes to the mesh. Extra
// routes stand in for the route packages. Only URL and Listener of the
// result are set.
func testServer(t *testing.T, bodyTimeout time.Duration, extra func(*http.ServeMux)) *httptest.Server {
	t.Helper()
	ready := make(chan struct{})
	close(ready)
	s := &Server{Log: slog.New(slog.DiscardHandler), Ready: ready, BodyTimeout: bodyTimeout, Extra: extra}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Close(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return &httptest.Server{URL: "http://" + ln.Addr().String(), Listener: ln}
}

// TestGuardRefusesBadInput: requests the REST API must refuse with a 4xx
// and a message that says why, before anything reaches the mesh (this
// server has none: reaching it would panic).
func TestGuardRefusesBadInput(t *testing.T) {
	reached := false
	srv := testServer(t, time.Second, func(mux *http.ServeMux) {
		mux.HandleFunc("/kar/v1/actor/{type}/{id}/reminders/{reminderId}", func(w http.ResponseWriter, r *http.Request) { reached = true })
	})
	big := strings.Repeat("x", MaxBody+1)
	tests := []struct {
		name, method, path string
		header             http.Header
		body               string
		status             int
		want               string
	}{
		{"issue 10: encoded traversal in id and method", "POST", "/kar/v1/actor/T/%2E%2E/call/..%2F..%2Fadmin", nil, "[]", 400, `holds a "/"`},
		{"issue 10: method smuggling a path and a query", "POST", "/kar/v1/actor/T/x/call/%2E%2E%2F%2E%2E%2Fsecret%3Fq=1", nil, "[]", 400, `holds a "/"`},
		{"method of two segments", "POST", "/kar/v1/actor/T/x/call/a/b", nil, "[]", 400, "one path segment"},
		{"method dot-dot", "POST", "/kar/v1/actor/T/x/call/%2E%2E", nil, "[]", 400, "dot segment"},
		{"no method", "POST", "/kar/v1/actor/T/x/call/", nil, "[]", 400, "method is empty"},
		{"literal dot-dot segment", "POST", "/kar/v1/actor/T/../call/m", nil, "[]", 400, `".", ".." or empty segments`},
		{"literal dot segment", "DELETE", "/kar/v1/actor/T/.", nil, "", 400, `".", ".." or empty segments`},
		{"empty segment", "POST", "/kar/v1/actor/T//call/m", nil, "[]", 400, `".", ".." or empty segments`},
		{"service path climbing to another route", "POST", "/kar/v1/service/s/call/../../actor/T/x/call/m", nil, "", 400, `".", ".." or empty segments`},
		{"NUL in actor id", "POST", "/kar/v1/actor/T/a%00b/call/m", nil, "[]", 400, "control character U+0000"},
		{"invalid UTF-8 actor id", "POST", "/kar/v1/actor/T/%FF/call/m", nil, "[]", 400, "not valid UTF-8"},
		{"NUL in actor type", "DELETE", "/kar/v1/actor/%00/x", nil, "", 400, "control character"},
		{"CR LF in method", "POST", "/kar/v1/actor/T/x/call/m%0D%0AHost:%20evil", nil, "[]", 400, "control character"},
		{"NUL in reminder id", "PUT", "/kar/v1/actor/T/x/reminders/%00", nil, "{}", 400, "control character"},
		{"invalid UTF-8 subscription id", "PUT", "/kar/v1/actor/T/x/events/%C3", nil, "{}", 400, "not valid UTF-8"},
		{"NUL in service name", "POST", "/kar/v1/service/s%00/call/x", nil, "", 400, "control character"},
		{"NUL in session", "POST", "/kar/v1/actor/T/x/call/m?session=a%00", nil, "[]", 400, "session"},
		{"invalid UTF-8 session", "POST", "/kar/v1/actor/T/x/call/m?session=%FE", nil, "[]", 400, "session"},
		{"arguments an object", "POST", "/kar/v1/actor/T/x/call/m", nil, `{"a":1}`, 400, "must be a JSON array"},
		{"arguments a string", "POST", "/kar/v1/actor/T/x/call/m", nil, `"a"`, 400, "must be a JSON array"},
		{"arguments null", "POST", "/kar/v1/actor/T/x/call/m", nil, `null`, 400, "must be a JSON array"},
		{"arguments cut short", "POST", "/kar/v1/actor/T/x/call/m", nil, `[1,`, 400, "not valid JSON"},
		{"arguments with trailing junk", "POST", "/kar/v1/actor/T/x/call/m", nil, `[1] x`, 400, "not valid JSON"},
		{"unknown Pragma", "POST", "/kar/v1/service/s/call/x", http.Header{"Pragma": {"asynch"}}, "", 400, `Pragma "asynch"`},
		{"async and promise", "POST", "/kar/v1/actor/T/x/call/m", http.Header{"Pragma": {"async, promise"}}, "[]", 400, "at once"},
		{"body too large", "POST", "/kar/v1/actor/T/x/call/m", nil, big, 413, "larger than"},
		{"await with no id", "POST", "/kar/v1/await", nil, "", 400, "request id"},
		{"unknown route", "GET", "/kar/v1/nothing", nil, "", 404, "no such route"},
		{"wrong method", "GET", "/kar/v1/actor/T/x/call/m", nil, "", 404, "no such route: GET"},
	}
	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		client := &http.Client{Timeout: 30 * time.Second}
		if proto == "h2c" {
			client = testenv.H2CClient(30 * time.Second)
		}
		for _, tt := range tests {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				req, err := http.NewRequest(tt.method, srv.URL+tt.path, strings.NewReader(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				for k, v := range tt.header {
					req.Header[k] = v
				}
				resp, err := client.Do(req)
				if err != nil {
					t.Fatalf("%s %s: %v", tt.method, tt.path, err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.status || !strings.Contains(string(b), tt.want) {
					t.Errorf("%s %s: %d %q, want %d with %q", tt.method, tt.path, resp.StatusCode, b, tt.status, tt.want)
				}
			})
		}
	}
	if reached {
		t.Error("a refused request reached its route")
	}
}

// TestSlowBodyIsCut: a body that trickles in is answered 408 within the
// body timeout and its HTTP/1.1 connection closed; on h2c only the stream
// ends and the connection serves the next call (kar-sdk keeps one for
// life). A handler that answers after far longer than the timeout once its
// body is read (POST /kar/v1/await, a slow component) is not cut.
func TestSlowBodyIsCut(t *testing.T) {
	const timeout = 300 * time.Millisecond
	srv := testServer(t, timeout, func(mux *http.ServeMux) {
		mux.HandleFunc("POST /test/slow", func(w http.ResponseWriter, r *http.Request) {
			b, ok := ReadBody(w, r)
			if !ok {
				return
			}
			select {
			case <-time.After(4 * timeout):
				fmt.Fprintf(w, "late %s", b)
			case <-r.Context().Done():
				// The caller sees no answer: the test fails on it.
			}
		})
	})
	addr := srv.Listener.Addr().String()

	t.Run("HTTP/1.1 slow body", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "POST /kar/v1/actor/T/x/call/m HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[")
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a slow body: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(b), "did not arrive within") {
			t.Errorf("slow body: %d %q, want 408", resp.StatusCode, b)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Errorf("answered after %v, timeout %v", d, timeout)
		}
		// The server closed the connection.
		if n, err := conn.Read(make([]byte, 1)); err == nil {
			t.Errorf("connection still open after a cut body (read %d bytes)", n)
		}
	})

	t.Run("HTTP/1.1 slow body on an unknown route", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[")
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		// The 404 comes at once; the connection is cut once the unread
		// body has not come within the timeout.
		if _, err := io.ReadAll(conn); err != nil {
			t.Fatalf("connection not closed: %v", err)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Errorf("closed after %v, timeout %v", d, timeout)
		}
	})

	t.Run("h2c slow body, then the connection serves on", func(t *testing.T) {
		client := testenv.H2CClient(30 * time.Second)
		pr, pw := io.Pipe()
		defer pw.Close()
		go pw.Write([]byte("["))
		start := time.Now()
		req, _ := http.NewRequest("POST", srv.URL+"/kar/v1/actor/T/x/call/m", pr)
		req.ContentLength = 100
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("no answer to a slow body: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestTimeout || resp.ProtoMajor != 2 {
			t.Errorf("slow body: %s %d %q, want 408 over HTTP/2", resp.Proto, resp.StatusCode, b)
		}
		if d := time.Since(start); d > timeout+2*time.Second {
			t.Errorf("answered after %v, timeout %v", d, timeout)
		}
		// The same connection (one per client) still serves.
		var reused bool
		ctx := httptraceReused(context.Background(), &reused)
		req, _ = http.NewRequestWithContext(ctx, "POST", srv.URL+"/test/slow", strings.NewReader("ok"))
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "late ok" || !reused {
			t.Errorf("next call: %d %q reused=%v", resp.StatusCode, b, reused)
		}
	})

	for _, proto := range []string{"HTTP/1.1", "h2c"} {
		t.Run(proto+" long answer after the body", func(t *testing.T) {
			client := &http.Client{Timeout: 30 * time.Second}
			if proto == "h2c" {
				client = testenv.H2CClient(30 * time.Second)
			}
			for _, body := range []string{"x", strings.Repeat("y", 300000)} {
				resp, err := client.Post(srv.URL+"/test/slow", "text/plain", strings.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(b) != "late "+body {
					t.Errorf("%d bytes: %d %.40q, want the late answer", len(body), resp.StatusCode, b)
				}
			}
		})
	}
}

// httptraceReused records whether a request went on a connection already open.
func httptraceReused(ctx context.Context, reused *bool) context.Context {
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { *reused = i.Reused }})
}

// TestIdleConnections: an HTTP/1.1 connection left idle is closed after
// the idle timeout; a request without a body may take far longer than it;
// an idle h2c connection stays open (kar-sdk never opens another).
func TestIdleConnections(t *testing.T) {
	const idle = 300 * time.Millisecond
	ready := make(chan struct{})
	close(ready)
	s := &Server{Log: slog.New(slog.DiscardHandler), Ready: ready, IdleTimeout: idle, Extra: func(mux *http.ServeMux) {
		mux.HandleFunc("GET /test/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "OK") })
		mux.HandleFunc("GET /test/sleep", func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-time.After(4 * idle):
				io.WriteString(w, "late")
			case <-r.Context().Done():
			}
		})
	}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close(context.Background()) })
	base := "http://" + ln.Addr().String()

	t.Run("HTTP/1.1 idle connection closed", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		br := bufio.NewReader(conn)
		for range 2 { // the first request and one after an idle pause
			io.WriteString(conn, "GET /test/ok HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("health: %v %v", resp, err)
			}
			io.ReadAll(resp.Body)
			time.Sleep(idle / 3)
		}
		start := time.Now()
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection: %v, want EOF", err)
		}
		if d := time.Since(start); d > idle+2*time.Second {
			t.Errorf("closed after %v idle, timeout %v", d, idle)
		}
	})

	t.Run("HTTP/1.1 long request without a body", func(t *testing.T) {
		client := &http.Client{Timeout: 30 * time.Second}
		for range 2 {
			resp, err := client.Get(base + "/test/sleep")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != "late" {
				t.Fatalf("long request cut: %d %q", resp.StatusCode, b)
			}
		}
	})

	t.Run("h2c idle connection kept", func(t *testing.T) {
		client := testenv.H2CClient(30 * time.Second)
		for i := range 2 {
			var reused bool
			req, _ := http.NewRequestWithContext(httptraceReused(context.Background(), &reused), "GET", base+"/test/ok", nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.ProtoMajor != 2 || i == 1 && !reused {
				t.Fatalf("request %d: %s, reused %v: the h2c connection did not stay", i, resp.Proto, reused)
			}
			time.Sleep(3 * idle)
		}
	})
}
