package api

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// fastRoutes are test routes on the fast path's prefixes (more specific
// than the API's own patterns, so they win), and one off it.
// waits counts the calls to .../wait begun and those ended by their
// client going away; release answers them.
type waits struct {
	begun, gone atomic.Int32
	release     chan struct{}
}

func fastRoutes(ws *waits) func(*http.ServeMux) {
	return func(mux *http.ServeMux) {
		mux.HandleFunc("/kar/v1/service/test/call/echo", func(w http.ResponseWriter, r *http.Request) {
			b, ok := ReadBody(w, r)
			if !ok {
				return
			}
			w.Header().Set("X-Method", r.Method)
			w.Header().Set("X-Query", r.URL.RawQuery)
			w.Header().Set("X-Pragma", r.Header.Get("Pragma"))
			w.Write(b)
		})
		mux.HandleFunc("/kar/v1/service/test/call/none", func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Type"] = nil
			w.Write([]byte("raw"))
		})
		mux.HandleFunc("/kar/v1/service/test/call/nocontent", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusNoContent)
		})
		mux.HandleFunc("/kar/v1/service/test/call/wait", func(w http.ResponseWriter, r *http.Request) {
			ws.begun.Add(1)
			select {
			case <-r.Context().Done():
				ws.gone.Add(1)
			case <-ws.release:
				io.WriteString(w, "released")
			}
		})
		mux.HandleFunc("GET /test/slow-path", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "net/http") })
	}
}

// exchange writes raw requests on conn and reads n answers.
func exchange(t *testing.T, conn net.Conn, br *bufio.Reader, raw string, n int) []*http.Response {
	t.Helper()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	var out []*http.Response
	for range n {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("answer %d: %v", len(out)+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(strings.NewReader(string(b)))
		out = append(out, resp)
	}
	return out
}

func body(r *http.Response) string { b, _ := io.ReadAll(r.Body); return string(b) }

// TestFastPath: calls over HTTP/1.1 are answered as net/http answers them
// (status, headers, sniffed or absent Content-Type, Date, Content-Length),
// one after another and pipelined on one connection; a request the fast
// path does not take (another route, a body still on its way, h2c) hands
// the connection to net/http, which answers it and all that follow.
func TestFastPath(t *testing.T) {
	srv := testServer(t, time.Second, fastRoutes(&waits{}))
	addr := srv.Listener.Addr().String()
	req := func(method, path, hdr, body string) string {
		return fmt.Sprintf("%s %s HTTP/1.1\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n%s", method, path, hdr, len(body), body)
	}
	echo := req("POST", "/kar/v1/service/test/call/echo?a=1", "Pragma: no-cache\r\ncontent-type: application/json\r\n", `{"x":1}`)

	tests := []struct {
		name  string
		raw   string
		check func(t *testing.T, rs []*http.Response)
		n     int
	}{
		{"one call", echo, func(t *testing.T, rs []*http.Response) {
			r := rs[0]
			if r.StatusCode != 200 || body(r) != `{"x":1}` || r.ContentLength != 7 || r.Header.Get("Date") == "" ||
				r.Header.Get("Content-Type") != "text/plain; charset=utf-8" || r.Header.Get("X-Method") != "POST" ||
				r.Header.Get("X-Query") != "a=1" || r.Header.Get("X-Pragma") != "no-cache" {
				t.Errorf("answer %d %v", r.StatusCode, r.Header)
			}
		}, 1},
		{"pipelined, in order", echo + req("PUT", "/kar/v1/service/test/call/echo", "", "second"), func(t *testing.T, rs []*http.Response) {
			if body(rs[0]) != `{"x":1}` || body(rs[1]) != "second" || rs[1].Header.Get("X-Method") != "PUT" {
				t.Errorf("pipelined answers out of order")
			}
		}, 2},
		{"no Content-Type, none sent", req("GET", "/kar/v1/service/test/call/none", "", ""), func(t *testing.T, rs []*http.Response) {
			if _, ok := rs[0].Header["Content-Type"]; ok || body(rs[0]) != "raw" {
				t.Errorf("Content-Type %q, body %q", rs[0].Header.Get("Content-Type"), body(rs[0]))
			}
		}, 1},
		{"204 without a body or length", req("POST", "/kar/v1/service/test/call/nocontent", "", "x") + echo, func(t *testing.T, rs []*http.Response) {
			if rs[0].StatusCode != 204 || rs[0].Header.Get("Content-Length") != "" || body(rs[1]) != `{"x":1}` {
				t.Errorf("204: %v, then %q", rs[0].Header, body(rs[1]))
			}
		}, 2},
		{"handed to net/http, which serves what follows", echo + req("GET", "/test/slow-path", "", "") + echo, func(t *testing.T, rs []*http.Response) {
			if body(rs[0]) != `{"x":1}` || body(rs[1]) != "net/http" || body(rs[2]) != `{"x":1}` {
				t.Errorf("answers %q %q %q", body(rs[0]), body(rs[1]), body(rs[2]))
			}
		}, 3},
		{"chunked body to net/http", "POST /kar/v1/service/test/call/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n", func(t *testing.T, rs []*http.Response) {
			if body(rs[0]) != "abc" {
				t.Errorf("chunked: %q", body(rs[0]))
			}
		}, 1},
		{"bad header to net/http", "POST /kar/v1/service/test/call/echo HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", func(t *testing.T, rs []*http.Response) {
			if rs[0].StatusCode != 400 {
				t.Errorf("bad header: %d", rs[0].StatusCode)
			}
		}, 1},
		{"signed Content-Length to net/http", "POST /kar/v1/service/test/call/echo HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\nabc", func(t *testing.T, rs []*http.Response) {
			if rs[0].StatusCode != 400 {
				t.Errorf("Content-Length +3: %d", rs[0].StatusCode)
			}
		}, 1},
		{"no Host to net/http", "POST /kar/v1/service/test/call/echo HTTP/1.1\r\nContent-Length: 0\r\n\r\n", func(t *testing.T, rs []*http.Response) {
			if rs[0].StatusCode != 400 {
				t.Errorf("no Host: %d", rs[0].StatusCode)
			}
		}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			tt.check(t, exchange(t, conn, bufio.NewReader(conn), tt.raw, tt.n))
		})
	}

	t.Run("body in two segments", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		io.WriteString(conn, "POST /kar/v1/service/test/call/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabc")
		time.Sleep(50 * time.Millisecond) // the rest comes in another segment
		rs := exchange(t, conn, br, "def"+echo, 2)
		if body(rs[0]) != "abcdef" || body(rs[1]) != `{"x":1}` {
			t.Errorf("split body: %q, then %q", body(rs[0]), body(rs[1]))
		}
	})

	t.Run("Connection: close", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		br := bufio.NewReader(conn)
		rs := exchange(t, conn, br, req("POST", "/kar/v1/service/test/call/echo", "Connection: close\r\n", "bye"), 1)
		if body(rs[0]) != "bye" || !rs[0].Close {
			t.Errorf("close: %q, Close %v", body(rs[0]), rs[0].Close)
		}
		if _, err := br.ReadByte(); err != io.EOF {
			t.Errorf("after Connection: close: %v, want EOF", err)
		}
	})

	t.Run("h2c", func(t *testing.T) {
		resp, err := testenv.H2CClient(20*time.Second).Post(srv.URL+"/kar/v1/service/test/call/echo", "text/plain", strings.NewReader("h2"))
		if err != nil {
			t.Fatal(err)
		}
		if resp.ProtoMajor != 2 || body(resp) != "h2" {
			t.Errorf("h2c: %s %q", resp.Proto, body(resp))
		}
		resp.Body.Close()
	})
}

// TestFastPathClientGone: a call whose client goes away ends (its context
// is cancelled) rather than waiting for an answer nobody reads, and Close
// waits for a call in progress to be answered.
func TestFastPathClientGone(t *testing.T) {
	ws := &waits{release: make(chan struct{})}
	ready := make(chan struct{})
	close(ready)
	s := &Server{Log: slog.New(slog.DiscardHandler), Ready: ready, Extra: fastRoutes(ws)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	wait := "POST /kar/v1/service/test/call/wait HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"

	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(conn, wait)
	testenv.Eventually(t, 10*time.Second, func() bool { return ws.begun.Load() == 1 })
	conn.Close()
	testenv.Eventually(t, 10*time.Second, func() bool { return ws.gone.Load() == 1 })

	// A call in progress when Close starts is answered, then the connection closes.
	conn, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, wait)
	testenv.Eventually(t, 10*time.Second, func() bool { return ws.begun.Load() == 2 })
	closed := make(chan struct{})
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s.Close(ctx)
		close(closed)
	}()
	testenv.Eventually(t, 10*time.Second, func() bool {
		s.fast.mu.Lock()
		defer s.fast.mu.Unlock()
		return s.fast.shutdown
	})
	close(ws.release)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || body(resp) != "released" {
		t.Fatalf("call in progress at Close: %v %v", resp, err)
	}
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("after Close: %v, want EOF", err)
	}
	<-closed
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if n := ws.gone.Load(); n != 1 {
		t.Errorf("calls ended as gone: %d, want 1", n)
	}
}
