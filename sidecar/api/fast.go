package api

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// The fast path serves the REST API's calls (service calls and actor
// method calls) over HTTP/1.1 without net/http's connection machinery.
// Under load, Go's HTTP/1.1 server was about a third of a caller sidecar's
// CPU outside the handlers: per request it starts a goroutine that reads
// ahead (to notice a client that went away), moves read deadlines, and
// parses headers into fresh strings one by one.
//
// Every connection starts here. A request is served on the fast path only
// when it is plain: HTTP/1.1, a call route, whole in the read buffer (head
// and Content-Length body), no Transfer-Encoding, Expect or Upgrade. The
// first request that is not (h2c's preface, another route, a body still on
// its way, anything odd) hands the connection, with the bytes read so far,
// to net/http's server for good, which then answers it and all that follow
// exactly as before. Requests on the fast path go through the same handler
// (guard, routes, Dispatch): only the connection handling differs.
//
// As net/http does, the connection is read while a call waits for its
// answer, so that a client that goes away cancels its call; a pipelined
// request waits for the answer before it.

// fastBufSize bounds a fast request: a larger one goes to net/http.
const fastBufSize = 16 << 10

// fastServer accepts the API's connections and serves them.
type fastServer struct {
	s       *Server
	handler http.Handler
	idle    time.Duration
	ln      net.Listener
	slow    *chanListener // connections handed to net/http

	mu       sync.Mutex
	conns    map[*fastConn]struct{}
	shutdown bool
	wg       sync.WaitGroup
}

// chanListener hands connections to net/http's server.
type chanListener struct {
	addr   net.Addr
	c      chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.c:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// handOff gives c to net/http's server, or closes it once that is closed.
func (l *chanListener) handOff(c net.Conn) {
	select {
	case l.c <- c:
	case <-l.closed:
		c.Close()
	}
}

// serve accepts connections on ln until it is closed.
func (f *fastServer) serve(ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			f.mu.Lock()
			down := f.shutdown
			f.mu.Unlock()
			if down || errors.Is(err, net.ErrClosed) {
				return http.ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		c := &fastConn{f: f, nc: nc, br: bufio.NewReaderSize(nc, fastBufSize), done: make(chan struct{}, 1), reqs: make(chan *http.Request), remote: nc.RemoteAddr().String()}
		f.mu.Lock()
		if f.shutdown {
			f.mu.Unlock()
			nc.Close()
			return http.ErrServerClosed
		}
		f.conns[c] = struct{}{}
		f.wg.Add(1)
		f.mu.Unlock()
		go c.serve()
	}
}

// stopAccepting closes the listener: no new connection comes.
func (f *fastServer) stopAccepting() {
	f.mu.Lock()
	f.shutdown = true
	f.mu.Unlock()
	f.ln.Close()
}

// close stops the fast path: idle connections close at once, those serving
// a call once it is answered, or when ctx ends.
func (f *fastServer) close(ctx context.Context) {
	f.mu.Lock()
	f.shutdown = true
	for c := range f.conns {
		c.closeIfIdle()
	}
	f.mu.Unlock()
	done := make(chan struct{})
	go func() { f.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		f.mu.Lock()
		for c := range f.conns {
			c.nc.Close()
		}
		f.mu.Unlock()
	}
}

func (f *fastServer) isShutdown() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.shutdown
}

// fastConn is one connection on the fast path.
type fastConn struct {
	f  *fastServer
	nc net.Conn
	br *bufio.Reader
	// reqs carries requests to the connection's worker, which serves them
	// one at a time (a goroutine per request would grow a fresh stack
	// each time); done receives a token when one has been answered.
	reqs chan *http.Request
	done chan struct{}

	mu     sync.Mutex
	busy   bool
	closed bool
	// head and out hold the answer being written, kept between calls.
	head, out []byte
	// remote is the client's address, rendered once for all requests.
	remote string
	// w and bufs are the answer's writer and the vector written, reused
	// by each call: the worker serves one request at a time and nothing
	// holds them once the answer is written.
	w      fastWriter
	vec    net.Buffers
	vecArr [2][]byte
	// req is where parse builds a request; the call gets a copy of it
	// with its context (WithContext copies anyway). body is the body of
	// the request being served: the next is parsed once it is answered.
	req  http.Request
	body fastBody
}

func (c *fastConn) closeIfIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.busy {
		c.closed = true
		c.nc.Close()
	}
}

func (c *fastConn) setBusy(b bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.busy = b
	return true
}

func (c *fastConn) forget() {
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	c.f.wg.Done()
}

// serve reads requests and serves them until the connection closes or is
// handed to net/http.
func (c *fastConn) serve() {
	handed, working := false, false
	defer func() {
		if working {
			close(c.reqs)
		}
		if !handed {
			c.nc.Close()
		}
		c.forget()
	}()
	c.nc.SetReadDeadline(time.Now().Add(c.f.idle))
	for {
		if _, err := c.br.Peek(1); err != nil {
			return // idle too long, or closed by the client or by close
		}
		req, n, ok := c.parse()
		if !ok || c.f.isShutdown() {
			// net/http answers it (and, shutting down, closes it).
			handed = true
			c.f.slow.handOff(&idleConn{Conn: &bufferedConn{Conn: c.nc, br: c.br}, idle: c.f.idle})
			return
		}
		c.br.Discard(n)
		if !c.setBusy(true) {
			return
		}
		ctx, cancel := context.WithCancel(context.Background())
		req = req.WithContext(ctx) // a copy: c.req is free again
		c.req = http.Request{}
		if !working {
			working = true
			go c.work()
		}
		c.reqs <- req
		// Read on while the call waits: a client that goes away ends it.
		_, err := c.br.Peek(1)
		for err != nil && isTimeout(err) && c.inFlight() {
			// The idle deadline of the previous answer passed during a long call.
			c.nc.SetReadDeadline(time.Now().Add(c.f.idle))
			_, err = c.br.Peek(1)
		}
		if err != nil {
			cancel()
		}
		<-c.done
		cancel()
		if req.Close && err == nil {
			// Answered and half-closed: give the client a moment to
			// read the answer and close its end, as net/http does.
			c.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			c.br.Discard(c.br.Buffered())
			c.br.Peek(1)
			return
		}
		if err != nil || !c.setBusy(false) {
			return
		}
	}
}

func (c *fastConn) inFlight() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// work serves the requests the reader passes on.
func (c *fastConn) work() {
	for req := range c.reqs {
		c.run(req)
	}
}

// run serves one request and writes its answer.
func (c *fastConn) run(req *http.Request) {
	w := &c.w
	if w.h == nil {
		w.h = make(http.Header, 4)
	}
	clear(w.h)
	w.status, w.body = 0, c.out[:0]
	defer func() {
		if p := recover(); p != nil {
			// As net/http: log it and close the connection unanswered.
			c.f.s.Log.Error("panic serving a request", "path", req.URL.Path, "panic", p)
			c.nc.Close()
		}
		// Answered: the connection is idle from now on, although its
		// reader learns it only when the client sends again or goes
		// away; Close may close it meanwhile (keep-alive clients hold
		// idle connections open).
		c.setBusy(false)
		c.done <- struct{}{}
	}()
	c.f.handler.ServeHTTP(w, req)
	closing := req.Close || strings.EqualFold(w.h.Get("Connection"), "close")
	head := w.encode(c.head[:0], closing)
	// Head and body in one system call, the body not copied again.
	c.vecArr = [2][]byte{head, w.body}
	c.vec = c.vecArr[:]
	_, err := c.vec.WriteTo(c.nc)
	c.vec, c.vecArr = nil, [2][]byte{}
	clear(w.h) // hold nothing of this answer until the next
	if err != nil {
		c.nc.Close()
	}
	switch {
	case c.f.isShutdown():
		c.nc.Close()
	case closing:
		// As net/http: the client reads the answer, then sees the end.
		if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			c.nc.Close()
		}
	}
	// The idle period starts with the answer (the reader waits meanwhile).
	c.nc.SetReadDeadline(time.Now().Add(c.f.idle))
	if cap(head) <= 4096 {
		c.head = head[:0]
	}
	if cap(w.body) <= fastBufSize {
		c.out = w.body[:0]
	} else {
		c.out = nil
	}
}

// parse reads the request whole in the buffer, or says it is not for the
// fast path. n is its length in the buffer.
func (c *fastConn) parse() (req *http.Request, n int, ok bool) {
	// Whatever the client sent in its segment is in the buffer now.
	buf, _ := c.br.Peek(c.br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, 0, false
	}
	head := string(buf[:end+2]) // one string for the request line and every header
	line, rest, _ := strings.Cut(head, "\r\n")
	method, line, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(line, " ")
	if !ok1 || !ok2 || proto != "HTTP/1.1" || !fastRoute(method, target) {
		return nil, 0, false
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, 0, false
	}
	count := strings.Count(rest, "\r\n")
	h := make(http.Header, count)
	vals := make([]string, count)
	length, host, hosts, closing := int64(0), "", 0, false
	for i := 0; rest != ""; i++ {
		var kv string
		kv, rest, _ = strings.Cut(rest, "\r\n")
		k, v, found := strings.Cut(kv, ":")
		if !found || !httpx.IsToken(k) || !httpx.ValidFieldValue(v) {
			return nil, 0, false
		}
		v = strings.Trim(v, " \t")
		k = canonicalKey(k)
		switch k {
		case "Content-Length":
			if _, dup := h[k]; dup {
				return nil, 0, false
			}
			// Digits only, as net/http takes it ("+3" is refused there).
			if v == "" || strings.Trim(v, "0123456789") != "" {
				return nil, 0, false
			}
			if length, err = strconv.ParseInt(v, 10, 64); err != nil || length > MaxBody {
				return nil, 0, false
			}
		case "Transfer-Encoding", "Expect", "Upgrade":
			return nil, 0, false
		case "Host":
			host, hosts = v, hosts+1
		case "Connection":
			for _, o := range strings.Split(v, ",") {
				switch strings.ToLower(strings.TrimSpace(o)) {
				case "close":
					closing = true
				case "upgrade":
					return nil, 0, false
				}
			}
		}
		vals[i] = v
		if prev, dup := h[k]; dup {
			h[k] = append(prev, v)
		} else {
			// The first value shares vals: no slice of its own.
			h[k] = vals[i : i+1 : i+1]
		}
	}
	if hosts != 1 {
		return nil, 0, false
	}
	n = end + 4 + int(length)
	if n > len(buf) {
		return nil, 0, false // the body is still on its way: net/http waits for it
	}
	c.req = http.Request{
		Method: method, URL: u, Proto: proto, ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Host: host, RequestURI: target, RemoteAddr: c.remote,
		ContentLength: length, Close: closing, Body: http.NoBody,
	}
	req = &c.req
	if length > 0 {
		c.body = fastBody{b: bytes.Clone(buf[end+4 : n])}
		req.Body = &c.body
	}
	return req, n, true
}

// fastRoute tells the routes taken on the fast path: calls, the hot path.
func fastRoute(method, target string) bool {
	switch method {
	case "HEAD", "CONNECT", "PRI", "OPTIONS", "TRACE", "":
		return false
	}
	if strings.HasPrefix(target, "/kar/v1/service/") {
		return true
	}
	return method == http.MethodPost && strings.HasPrefix(target, "/kar/v1/actor/") && strings.Contains(target, "/call/")
}

// directCalls serves the call routes (service calls, actor method calls)
// without ServeMux's matching, which was a fifth of a caller sidecar's
// allocations (its path values, and a second match of a trailing-slash
// redirect that a {path...} pattern always tries), and everything else
// through mux. It needs the path canonical (guard) and no route more
// specific than the call routes mounted (Server.DirectCallRoutes).
func (s *Server) directCalls(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch route, v := directRoute(r.Method, r.URL.EscapedPath()); route {
		case serviceRoute:
			s.callService(w, r, v[0])
		case actorRoute:
			s.callActor(w, r, v[0], v[1], v[2])
		default:
			mux.ServeHTTP(w, r)
		}
	})
}

// Routes of directRoute.
const (
	noRoute = iota
	serviceRoute
	actorRoute
)

// directRoute takes a call route and its path values as ServeMux does,
// but only where that is certain: the literal segments written as they
// are (the mux would also match them percent-encoded), the wildcards'
// segments ones it matches. noRoute leaves the request to the mux.
func directRoute(method, p string) (route int, values [3]string) {
	if rest, ok := strings.CutPrefix(p, "/kar/v1/service/"); ok {
		// "/kar/v1/service/{service}/call/{path...}", any method.
		service, rest, ok := strings.Cut(rest, "/")
		if ok && strings.HasPrefix(rest, "call/") {
			if v, ok := segmentValue(service); ok {
				return serviceRoute, [3]string{v, pathUnescape(rest[len("call/"):])}
			}
		}
	} else if rest, ok := strings.CutPrefix(p, "/kar/v1/actor/"); ok && method == http.MethodPost {
		// "POST /kar/v1/actor/{type}/{id}/call/{method...}"
		typ, rest, ok1 := strings.Cut(rest, "/")
		id, rest, ok2 := strings.Cut(rest, "/")
		m, ok3 := strings.CutPrefix(rest, "call/")
		t, okt := segmentValue(typ)
		i, oki := segmentValue(id)
		if ok1 && ok2 && ok3 && okt && oki {
			return actorRoute, [3]string{t, i, pathUnescape(m)}
		}
	}
	return noRoute, values
}

// segmentValue is the value ServeMux gives a {name} wildcard for an
// escaped segment; ok false where it would not match one (an empty
// segment, or one that unescapes to "/").
func segmentValue(seg string) (string, bool) {
	v := pathUnescape(seg)
	return v, seg != "" && v != "/"
}

// pathUnescape is a path value as ServeMux gives it: unescaped, or as
// written when it does not unescape.
func pathUnescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	u, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return u
}

// commonKeys are header names kept as they are (no new string).
var commonKeys = map[string]string{}

func init() {
	for _, k := range []string{"Host", "Content-Type", "Content-Length", "User-Agent", "Accept", "Accept-Encoding", "Connection", "Pragma", "Traceparent", "Tracestate"} {
		commonKeys[k] = k
		commonKeys[strings.ToLower(k)] = k
	}
}

func canonicalKey(k string) string {
	if c, ok := commonKeys[k]; ok {
		return c
	}
	return textproto.CanonicalMIMEHeaderKey(k)
}

// fastBody is a request body already read whole; ReadBody takes it without
// copying.
type fastBody struct {
	b   []byte
	off int
}

func (b *fastBody) Read(p []byte) (int, error) {
	if b.off >= len(b.b) {
		return 0, io.EOF
	}
	n := copy(p, b.b[b.off:])
	b.off += n
	return n, nil
}

func (b *fastBody) Close() error { return nil }

// take hands the unread body over once.
func (b *fastBody) take() []byte {
	r := b.b[b.off:]
	b.off = len(b.b)
	return r
}

// fastWriter collects an answer: status, headers, body.
type fastWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (w *fastWriter) Header() http.Header { return w.h }

func (w *fastWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}

func (w *fastWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.body = append(w.body, p...)
	return len(p), nil
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// encode renders the answer as net/http would: a Date, a Content-Type
// sniffed when the handler set none (a nil one means none), a
// Content-Length.
func (w *fastWriter) encode(out []byte, closing bool) []byte {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	body := w.body
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(w.status), 10)
	out = append(out, ' ')
	out = append(out, http.StatusText(w.status)...)
	out = append(out, "\r\n"...)
	if _, ok := w.h["Content-Type"]; !ok && len(body) > 0 {
		w.h["Content-Type"] = []string{http.DetectContentType(body)}
	}
	if _, ok := w.h["Date"]; !ok {
		out = append(out, "Date: "...)
		out = time.Now().UTC().AppendFormat(out, http.TimeFormat)
		out = append(out, "\r\n"...)
	}
	for k, vs := range w.h {
		if k == "Content-Length" || k == "Transfer-Encoding" || !httpx.IsToken(k) {
			continue
		}
		for _, v := range vs {
			out = append(out, k...)
			out = append(out, ": "...)
			out = appendFieldValue(out, v)
			out = append(out, "\r\n"...)
		}
	}
	if bodyAllowed(w.status) {
		out = append(out, "Content-Length: "...)
		out = strconv.AppendInt(out, int64(len(body)), 10)
		out = append(out, "\r\n"...)
	}
	if closing {
		out = append(out, "Connection: close\r\n"...)
	}
	return append(out, "\r\n"...)
}

// appendFieldValue writes v with CR and LF turned into spaces, as net/http does.
func appendFieldValue(out []byte, v string) []byte {
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b == '\r' || b == '\n' {
			b = ' '
		}
		out = append(out, b)
	}
	return out
}

// bufferedConn is a connection whose first bytes were read into br.
type bufferedConn struct {
	net.Conn
	br *bufio.Reader
}

func (c *bufferedConn) Read(p []byte) (int, error) { return c.br.Read(p) }

// CloseWrite half-closes the connection (see idleConn.CloseWrite).
func (c *bufferedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
