package appclient

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// echo is what echoHandler saw.
type echo struct {
	Method, URI string
	Header      http.Header
	Body        string
}

func echoHandler(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("X-Reply", "yes")
	w.Header()["X-Multi-Reply"] = []string{"a", "b"}
	w.Header().Set("Pragma", "no-cache")
	json.NewEncoder(w).Encode(echo{r.Method, r.RequestURI, r.Header, string(b)})
}

// server is an httptest server on a free port that counts the
// connections it accepted.
type server struct {
	*httptest.Server
	port  int
	conns atomic.Int32
}

func newServer(t testing.TB, h http.Handler) *server {
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	s.port = s.Listener.Addr().(*net.TCPAddr).Port
	return s
}

// clients are the direct path and the net/http path it replaces, which
// must behave alike.
func clients(port int) map[string]*Client {
	transport := New(port, false)
	transport.direct = false
	return map[string]*Client{"direct": New(port, false), "net/http": transport}
}

func idle(c *Client) int {
	c.pool.mu.Lock()
	defer c.pool.mu.Unlock()
	return len(c.pool.idle)
}

func TestRoundTrip(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(echoHandler))
	tests := []struct {
		name, method, path, query string
		header                    http.Header
		body                      string
		wantURI                   string
		wantHeader                http.Header // a subset
		wantAbsent                []string
	}{
		{name: "get with query", method: "GET", path: "/a/b", query: "x=1&y=two%20words", wantURI: "/a/b?x=1&y=two%20words"},
		{name: "empty method is get", path: "/a", wantURI: "/a"},
		{name: "post body", method: "POST", path: "/post", header: http.Header{"Content-Type": {"application/json"}}, body: `{"a":1}`,
			wantURI: "/post", wantHeader: http.Header{"Content-Type": {"application/json"}, "Content-Length": {"7"}}},
		{name: "put body", method: "PUT", path: "/put", body: "payload", wantURI: "/put"},
		{name: "post without body", method: "POST", path: "/p", wantURI: "/p", wantHeader: http.Header{"Content-Length": {"0"}}},
		{name: "delete", method: "DELETE", path: "/kar/impl/v1/actor/T/id", wantURI: "/kar/impl/v1/actor/T/id"},
		{name: "patch", method: "PATCH", path: "/p", body: "x", wantURI: "/p"},
		{name: "multi-valued header", method: "GET", path: "/m", header: http.Header{"X-Multi": {"a", "b, c"}, "X-One": {" padded "}},
			wantURI: "/m", wantHeader: http.Header{"X-Multi": {"a", "b, c"}, "X-One": {"padded"}}},
		{name: "hop headers dropped", method: "POST", path: "/h", body: "b",
			header:  http.Header{"Connection": {"close"}, "Pragma": {"async"}, "Host": {"evil"}, "Transfer-Encoding": {"chunked"}, "Content-Length": {"99"}, "Te": {"trailers"}},
			wantURI: "/h", wantHeader: http.Header{"Content-Length": {"1"}}, wantAbsent: []string{"Pragma", "Te", "Transfer-Encoding", "Connection"}},
		{name: "decoded path is escaped", method: "GET", path: "/a b/caf\u00e9", wantURI: "/a%20b/caf%C3%A9"},
		{name: "escaped path kept", method: "GET", path: "/actor/a%2Fb/m", wantURI: "/actor/a%2Fb/m"},
		{name: "question mark in path", method: "GET", path: "/a?b", query: "c=d", wantURI: "/a?b?c=d"},
	}
	for name, c := range clients(srv.port) {
		for _, tt := range tests {
			t.Run(name+"/"+tt.name, func(t *testing.T) {
				resp, err := c.Do(context.Background(), tt.method, tt.path, tt.query, httpx.FieldsOf(tt.header), []byte(tt.body))
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != 200 {
					t.Fatalf("status %d: %s", resp.Status, resp.Body)
				}
				var got echo
				if err := json.Unmarshal(resp.Body, &got); err != nil {
					t.Fatalf("%v: %s", err, resp.Body)
				}
				wantMethod := tt.method
				if wantMethod == "" {
					wantMethod = "GET"
				}
				if got.Method != wantMethod || got.URI != tt.wantURI || got.Body != tt.body {
					t.Errorf("server saw %s %s %q, want %s %s %q", got.Method, got.URI, got.Body, wantMethod, tt.wantURI, tt.body)
				}
				for k, v := range tt.wantHeader {
					if !slicesEqual(got.Header[k], v) {
						t.Errorf("server saw %s: %q, want %q", k, got.Header[k], v)
					}
				}
				for _, k := range tt.wantAbsent {
					if v, ok := got.Header[k]; ok {
						t.Errorf("server saw hop header %s: %q", k, v)
					}
				}
				if resp.Header.Get("X-Reply") != "yes" || !slicesEqual(resp.Header.Header()["X-Multi-Reply"], []string{"a", "b"}) {
					t.Errorf("response header %v", resp.Header)
				}
				for _, k := range []string{"Content-Length", "Pragma", "Connection", "Transfer-Encoding"} {
					if resp.Header.Has(k) {
						t.Errorf("response kept hop header %s", k)
					}
				}
			})
		}
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00") && len(a) == len(b)
}

func TestStatusAndFraming(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/status/{code}", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.PathValue("code"))
		w.WriteHeader(code)
		if code != 204 && code != 304 {
			fmt.Fprintf(w, "status %d", code)
		}
	})
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for _, s := range []string{"one ", "two ", "three"} {
			io.WriteString(w, s)
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	})
	tests := []struct {
		method, path string
		status       int
		body         string
		newConns     int32 // for three calls
	}{
		{"GET", "/status/200", 200, "status 200", 1},
		{"POST", "/status/201", 201, "status 201", 1},
		{"DELETE", "/status/204", 204, "", 1},
		{"GET", "/status/304", 304, "", 1},
		{"GET", "/status/404", 404, "status 404", 1},
		{"PUT", "/status/500", 500, "status 500", 1},
		{"HEAD", "/status/200", 200, "", 1},
		{"GET", "/chunked", 200, "one two three", 1},
		{"GET", "/close", 200, "bye", 3},
	}
	for _, tt := range tests {
		for _, name := range []string{"direct", "net/http"} {
			t.Run(name+"/"+tt.method+tt.path, func(t *testing.T) {
				srv := newServer(t, mux)
				c := New(srv.port, false)
				c.direct = name == "direct"
				for range 3 {
					resp, err := c.Do(context.Background(), tt.method, tt.path, "", nil, nil)
					if err != nil {
						t.Fatal(err)
					}
					if resp.Status != tt.status || string(resp.Body) != tt.body {
						t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.status, tt.body)
					}
				}
				if n := srv.conns.Load(); n != tt.newConns {
					t.Errorf("%d connections for 3 calls, want %d", n, tt.newConns)
				}
			})
		}
	}
}

// rawServer serves each connection with serve until it returns, then
// closes it. It counts connections and requests.
type rawServer struct {
	port     int
	conns    atomic.Int32
	requests atomic.Int32
}

func newRawServer(t testing.TB, serve func(s *rawServer, n int32, c net.Conn, br *bufio.Reader)) *rawServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{port: ln.Addr().(*net.TCPAddr).Port}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close() // ends serve's reads on connections the client pooled
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			n := s.conns.Add(1)
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(s, n, c, bufio.NewReader(c))
			}()
		}
	}()
	return s
}

// read reads one request and its body; false at the connection's end.
func (s *rawServer) read(br *bufio.Reader) (*http.Request, bool) {
	r, err := http.ReadRequest(br)
	if err != nil {
		return nil, false
	}
	io.Copy(io.Discard, r.Body)
	s.requests.Add(1)
	return r, true
}

func TestRawResponses(t *testing.T) {
	tests := []struct {
		name, reply string
		close       bool // the server closes after replying
		status      int
		body        string
		pooled      bool
		header      http.Header
	}{
		{name: "http/1.0 close-delimited", reply: "HTTP/1.0 200 OK\r\nX-A: 1\r\n\r\nhello", close: true, status: 200, body: "hello", header: http.Header{"X-A": {"1"}}},
		{name: "http/1.1 close-delimited", reply: "HTTP/1.1 200 OK\r\n\r\nhello", close: true, status: 200, body: "hello"},
		{name: "connection close", reply: "HTTP/1.1 201 Created\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", close: true, status: 201, body: "hello"},
		{name: "http/1.0 keep-alive", reply: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello", status: 200, body: "hello", pooled: true},
		{name: "100 continue", reply: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", status: 200, body: "ok", pooled: true},
		{name: "chunked with trailer", reply: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n", status: 200, body: "hello world", pooled: true},
		{name: "no content", reply: "HTTP/1.1 204 No Content\r\n\r\n", status: 204, pooled: true},
		{name: "bytes past the response", reply: "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokJUNK", status: 200, body: "ok"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newRawServer(t, func(s *rawServer, _ int32, c net.Conn, br *bufio.Reader) {
				for {
					if _, ok := s.read(br); !ok {
						return
					}
					io.WriteString(c, tt.reply)
					if tt.close {
						return
					}
				}
			})
			c := New(s.port, false)
			for range 2 {
				resp, err := c.Do(context.Background(), "GET", "/", "", nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if resp.Status != tt.status || string(resp.Body) != tt.body {
					t.Fatalf("got %d %q, want %d %q", resp.Status, resp.Body, tt.status, tt.body)
				}
				for k, v := range tt.header {
					if got := resp.Header.Header()[k]; !slicesEqual(got, v) {
						t.Errorf("header %s: %q, want %q", k, got, v)
					}
				}
				if pooled := idle(c) == 1; pooled != tt.pooled {
					t.Errorf("connection pooled: %v, want %v", pooled, tt.pooled)
				}
			}
		})
	}
}

// The request is written as given: header names unchanged, one line per
// value, hop headers dropped in any case.
func TestRequestBytes(t *testing.T) {
	got := make(chan string, 1)
	s := newRawServer(t, func(_ *rawServer, _ int32, c net.Conn, br *bufio.Reader) {
		var b strings.Builder
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			b.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		body := make([]byte, 4)
		io.ReadFull(br, body)
		got <- b.String() + string(body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
	})
	c := New(s.port, false)
	// Names as a client may send them: hop headers in lower case too.
	h := httpx.Fields{"x-lower", "1", "X-Multi", "a", "X-Multi", "b", "pragma", "async", "content-length", "7", "User-Agent", "sdk"}
	if _, err := c.Do(context.Background(), "POST", "/p", "q=1", h, []byte("body")); err != nil {
		t.Fatal(err)
	}
	req := <-got
	lines := strings.Split(req, "\r\n")
	if lines[0] != "POST /p?q=1 HTTP/1.1" || lines[len(lines)-1] != "body" {
		t.Errorf("request:\n%s", req)
	}
	want := map[string]int{"x-lower: 1": 1, "X-Multi: a": 1, "X-Multi: b": 1, "Content-Length: 4": 1, "User-Agent: sdk": 1, "Host: 127.0.0.1:" + strconv.Itoa(s.port): 1}
	seen := map[string]int{}
	for _, l := range lines[1 : len(lines)-2] {
		seen[l]++
	}
	for l, n := range want {
		if seen[l] != n {
			t.Errorf("%q %d times in request:\n%s", l, seen[l], req)
		}
	}
	if len(seen) != len(want) {
		t.Errorf("request has other lines:\n%s", req)
	}
}

func TestBadRequest(t *testing.T) {
	c := New(1, false) // never dialled
	tests := []struct {
		name, method, path string
		header             http.Header
	}{
		{"header injection", "GET", "/", http.Header{"X-A": {"1\r\nX-B: 2"}}},
		{"bad header name", "GET", "/", http.Header{"X A": {"1"}}},
		{"bad method", "GE T", "/", nil},
		{"bad escape", "GET", "/100%", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := c.Do(context.Background(), tt.method, tt.path, "", httpx.FieldsOf(tt.header), nil)
			var u *Unreachable
			if err == nil || errors.As(err, &u) {
				t.Errorf("got %v, want a bad request error", err)
			}
		})
	}
}

// requestTarget's shortcut must agree with what net/http would send.
func TestRequestTarget(t *testing.T) {
	base := "http://127.0.0.1:1"
	for _, pq := range [][2]string{
		{"/", ""}, {"/a/b", "x=1&y=2"}, {"/a:b@c!$&'()*+,;=-._~", "a=b/c?d"}, {"/a b", ""}, {"/a%2Fb", ""},
		{"/é", "é"}, {"/a", "b#c"}, {"/a?b", ""}, {"//x", ""}, {"/a", "x=%zz"}, {"/a", "<>\"{}|^`"},
	} {
		path, query, err := requestTarget(base, pq[0], pq[1])
		if err != nil {
			t.Errorf("%q: %v", pq, err)
			continue
		}
		got := path
		if query != "" {
			got += "?" + query
		}
		s := base + pq[0]
		if pq[1] != "" {
			s += "?" + pq[1]
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Errorf("%q: %v", pq, err)
			continue
		}
		if want := u.RequestURI(); got != want {
			t.Errorf("%q: %q, net/http sends %q", pq, got, want)
		}
	}
}

// A pooled connection the component closed while it was idle fails the
// next request before any answer: it goes again, once, on a new one.
func TestIdleClosedRetry(t *testing.T) {
	closed := make(chan struct{}, 10)
	s := newRawServer(t, func(s *rawServer, n int32, c net.Conn, br *bufio.Reader) {
		defer func() { closed <- struct{}{} }()
		if n > 2 {
			return // the third connection fails too: the retry is not retried
		}
		if _, ok := s.read(br); ok {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
		// and close as if idle for too long
	})
	c := New(s.port, false)
	call := func() error {
		_, err := c.Do(context.Background(), "POST", "/", "", nil, []byte("x"))
		return err
	}
	if err := call(); err != nil {
		t.Fatal(err)
	}
	<-closed
	if err := call(); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if r, n := s.requests.Load(), s.conns.Load(); r != 2 || n != 2 {
		t.Errorf("server handled %d requests on %d connections, want 2 on 2", r, n)
	}
	<-closed
	err := call()
	var u *Unreachable
	if !errors.As(err, &u) {
		t.Fatalf("third call: %v, want Unreachable", err)
	}
	if r, n := s.requests.Load(), s.conns.Load(); r != 2 || n != 3 {
		t.Errorf("server handled %d requests on %d connections, want 2 on 3", r, n)
	}
}

// Connections idle past maxIdleAge are not used.
func TestStaleIdle(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(echoHandler))
	c := New(srv.port, false)
	for range 2 {
		if _, err := c.Do(context.Background(), "GET", "/", "", nil, nil); err != nil {
			t.Fatal(err)
		}
	}
	c.pool.mu.Lock()
	c.pool.idle[0].idleAt = time.Now().Add(-maxIdleAge - time.Second)
	c.pool.mu.Unlock()
	if _, err := c.Do(context.Background(), "GET", "/", "", nil, nil); err != nil {
		t.Fatal(err)
	}
	if n := srv.conns.Load(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	if n := idle(c); n != 1 {
		t.Errorf("%d idle connections, want 1", n)
	}
}

func TestContextEnds(t *testing.T) {
	tests := []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancel", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}, context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gone := make(chan struct{})
			s := newRawServer(t, func(s *rawServer, n int32, c net.Conn, br *bufio.Reader) {
				if n == 1 {
					s.read(br)
					br.ReadByte() // hangs until the client closes
					close(gone)
					return
				}
				for {
					if _, ok := s.read(br); !ok {
						return
					}
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				}
			})
			c := New(s.port, false)
			ctx, cancel := tt.ctx()
			defer cancel()
			start := time.Now()
			_, err := c.Do(ctx, "GET", "/", "", nil, nil)
			var u *Unreachable
			if !errors.As(err, &u) || !errors.Is(err, tt.want) {
				t.Errorf("got %v, want Unreachable %v", err, tt.want)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("returned after %v", d)
			}
			select {
			case <-gone:
			case <-time.After(2 * time.Second):
				t.Error("connection not closed")
			}
			if idle(c) != 0 {
				t.Error("connection pooled")
			}
			// A later call with a live context is not hurt by the old deadline.
			ctx, cancel = context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if _, err := c.Do(ctx, "GET", "/", "", nil, nil); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Do(context.Background(), "GET", "/", "", nil, nil); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestNotListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	for name, c := range clients(port) {
		t.Run(name, func(t *testing.T) {
			_, err := c.Do(context.Background(), "GET", "/", "", nil, nil)
			var u *Unreachable
			if !errors.As(err, &u) {
				t.Errorf("got %v, want Unreachable", err)
			}
		})
	}
}

func TestLargeBodies(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) { io.Copy(w, r.Body) })
	mux.HandleFunc("/length", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Write(b)
	})
	srv := newServer(t, mux)
	body := make([]byte, 4<<20)
	rand.Read(body)
	for name, c := range clients(srv.port) {
		for _, path := range []string{"/chunked", "/length"} {
			t.Run(name+path, func(t *testing.T) {
				resp, err := c.Do(context.Background(), "POST", path, "", nil, body)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(resp.Body, body) {
					t.Errorf("got %d bytes back, not the %d sent", len(resp.Body), len(body))
				}
			})
		}
	}
}

func TestConcurrent(t *testing.T) {
	srv := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		io.Copy(w, r.Body)
	}))
	c := New(srv.port, false)
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := range 30 {
				want := fmt.Sprintf("g%d-%d", g, i)
				resp, err := c.Do(context.Background(), "POST", "/"+want, "", nil, []byte(want))
				if err != nil {
					t.Error(err)
					return
				}
				if string(resp.Body) != want || resp.Header.Get("X-Path") != "/"+want {
					t.Errorf("got %q %q, want %q", resp.Body, resp.Header.Get("X-Path"), want)
				}
			}
		})
	}
	wg.Wait()
	if n := srv.conns.Load(); n > 64 {
		t.Errorf("%d connections for 64 goroutines", n)
	}
}

// BenchmarkDo compares the direct path with net/http's Transport on a
// small call like the mesh's deliveries; the server's CPU is in both.
func BenchmarkDo(b *testing.B) {
	srv := newServer(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"greeting":"Hello John Doe!"}`)
	}))
	header := httpx.Fields{"Content-Type", "application/json", "Accept", "*/*"}
	body := []byte(`{"name":"John Doe"}`)
	for _, name := range []string{"direct", "net-http"} {
		b.Run(name, func(b *testing.B) {
			c := New(srv.port, false)
			c.direct = name == "direct"
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := c.Do(context.Background(), "POST", "/greeter/helloJson", "", header, body)
					if err != nil || resp.Status != 200 {
						b.Fatal(err)
					}
				}
			})
		})
	}
}

// A component may answer before it read a large body (a size limit) or
// answer while it reads it: the answer comes back either way, on both
// paths, and nothing hangs.
func TestAnswerBeforeBodyRead(t *testing.T) {
	// More than loopback's socket buffers (a few MiB each way) can hold.
	body := make([]byte, 32<<20)
	tests := []struct {
		name   string
		serve  func(c net.Conn, br *bufio.Reader)
		status int
		echo   bool // the answer carries the body back
	}{
		{"rejected unread", func(c net.Conn, br *bufio.Reader) {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nConnection: close\r\nContent-Length: 8\r\n\r\ntoo big!")
			// Then discard what comes before closing, as Go's and Node's
			// servers do: closing on unread bytes would reset the
			// connection and could drop the answer on the floor.
			c.(*net.TCPConn).CloseWrite()
			io.Copy(io.Discard, br)
		}, http.StatusRequestEntityTooLarge, false},
		{"streamed back while read", func(c net.Conn, br *bufio.Reader) {
			r, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			// Echo as it reads: the buffers cannot hold the body, so a
			// client that writes everything before reading blocks here.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: "+strconv.FormatInt(r.ContentLength, 10)+"\r\n\r\n")
			io.Copy(c, r.Body)
		}, http.StatusOK, true},
	}
	for _, tt := range tests {
		s := newRawServer(t, func(_ *rawServer, _ int32, c net.Conn, br *bufio.Reader) { tt.serve(c, br) })
		for name, c := range clients(s.port) {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				resp, err := c.Do(ctx, "POST", "/upload", "", nil, body)
				if err != nil {
					t.Fatalf("got %v, want the component's %d", err, tt.status)
				}
				if resp.Status != tt.status {
					t.Errorf("status %d, want %d", resp.Status, tt.status)
				}
				if tt.echo && !bytes.Equal(resp.Body, body) {
					t.Errorf("got %d bytes back, want the %d sent", len(resp.Body), len(body))
				}
				if n := idle(c); n != 0 {
					t.Errorf("%d connections pooled after a closing answer, want 0", n)
				}
			})
		}
	}
}
