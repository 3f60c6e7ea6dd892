// Package api is the sidecar's REST API on the runtime port: the routes of
// /kar/v1 that components call (reference/kar-rest-api.swagger.yaml), served
// over HTTP/1.1 and h2c with prior knowledge on the same port.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/mesh"
	"github.com/kar-runtime/kar/sidecar/metrics"
	"github.com/kar-runtime/kar/sidecar/tracing"
	"github.com/redis/go-redis/v9"
)

// MaxBody is the largest request body accepted: what fits in one Kafka record.
const MaxBody = 1000000 - 16*1024

// Server serves the REST API of one sidecar.
type Server struct {
	Mesh           *mesh.Mesh
	Log            *slog.Logger
	RequestTimeout time.Duration
	// BodyTimeout bounds how long a request body may take to arrive
	// (DefaultBodyTimeout when 0); a slower one is answered 408 and its
	// connection closed.
	BodyTimeout time.Duration
	// IdleTimeout closes an HTTP/1.1 connection left without a request
	// for this long (DefaultIdleTimeout when 0); h2c connections stay.
	IdleTimeout time.Duration
	// Ready is closed once the sidecar has joined the mesh; requests that
	// arrive earlier wait for it.
	Ready <-chan struct{}
	// Shutdown starts an orderly shutdown of the sidecar (POST /kar/v1/system/shutdown).
	Shutdown func()
	// ActorCleanup removes an actor's state and more on DELETE of the actor.
	ActorCleanup ActorCleanup
	// Extra mounts more routes (actor state, reminders, events) on the same mux.
	Extra func(mux *http.ServeMux)
	// Redis and Keys are where the information routes find actor placements.
	Redis redis.UniversalClient
	Keys  store.Keys
	// Metrics are served at GET /metrics, and record the calls made here
	// (nil: neither).
	Metrics *metrics.Metrics
	// Tracer makes the callers' spans (nil: tracing is off).
	Tracer *tracing.Tracer
	// DirectCallRoutes says that Extra mounts no route more specific than
	// the call routes (service calls, actor method calls), so that calls
	// on the fast path can skip ServeMux's matching (directCalls).
	DirectCallRoutes bool

	// mu guards srv and fast, set by Serve, and closed, set by Close.
	mu     sync.Mutex
	srv    *http.Server
	fast   *fastServer
	closed bool
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler { return s.guard(s.routes()) }

// routes is the API's mux.
func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/kar/v1/service/{service}/call/{path...}", s.serviceCall)
	mux.HandleFunc("POST /kar/v1/await", s.await)
	mux.HandleFunc("GET /kar/v1/system/health", s.health)
	mux.HandleFunc("POST /kar/v1/system/shutdown", s.shutdown)
	mux.HandleFunc("GET /kar/v1/system/information/{component}", s.information)
	s.actorRoutes(mux)
	if s.Metrics != nil {
		// KAR serves its metrics on the runtime port, where Prometheus
		// scrapes them.
		mux.Handle("GET /metrics", s.Metrics.Handler())
	}
	if s.Extra != nil {
		s.Extra(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		text(w, http.StatusNotFound, fmt.Sprintf("no such route: %s %s (see the kar REST API under /kar/v1)", r.Method, r.URL.Path))
	})
	return mux
}

// Serve serves the API on ln over HTTP/1.1 and h2c until Close. Calls
// over HTTP/1.1 take the fast path (fast.go); everything else net/http's
// server.
func (s *Server) Serve(ln net.Listener) error {
	mux := s.routes()
	h := s.guard(mux)
	fh := h
	if s.DirectCallRoutes {
		fh = s.guard(s.directCalls(mux))
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ConnState: trackIdle}
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	// kar-sdk opens one HTTP/2 connection and multiplexes every call on it.
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: 100000}
	slow := &chanListener{addr: ln.Addr(), c: make(chan net.Conn), closed: make(chan struct{})}
	fast := &fastServer{s: s, handler: fh, idle: idle, ln: ln, slow: slow, conns: map[*fastConn]struct{}{}}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return nil
	}
	s.srv, s.fast = srv, fast
	s.mu.Unlock()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(slow) }()
	err := fast.serve(ln)
	ln.Close()
	slow.Close()
	serr := <-errc
	switch {
	case errors.Is(err, http.ErrServerClosed):
		return nil
	case err == nil && !errors.Is(serr, http.ErrServerClosed) && !errors.Is(serr, net.ErrClosed):
		return serr
	}
	return err
}

// Close stops the server, letting requests in progress finish until ctx ends.
func (s *Server) Close(ctx context.Context) {
	s.mu.Lock()
	s.closed = true
	srv, fast := s.srv, s.fast
	s.mu.Unlock()
	if fast != nil {
		fast.stopAccepting()
	}
	if srv != nil {
		srv.Shutdown(ctx)
	}
	if fast != nil {
		fast.close(ctx)
	}
}

// health answers 200 OK while the sidecar can serve, and 503 with the
// reason while it cannot (joining, no partition, a backend unreachable):
// what Kubernetes' probes and Code Engine act on.
func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	select {
	case <-s.Ready:
	default:
		text(w, http.StatusServiceUnavailable, "joining the mesh")
		return
	}
	if err := s.Mesh.Health(); err != nil {
		text(w, http.StatusServiceUnavailable, "cannot serve: "+err.Error())
		return
	}
	text(w, http.StatusOK, "OK")
}

func text(w http.ResponseWriter, status int, msg string) { httpx.Text(w, status, msg) }

// waitReady holds a request until the sidecar has joined the mesh.
func (s *Server) waitReady(w http.ResponseWriter, r *http.Request) bool {
	select {
	case <-s.Ready:
		return true
	default:
	}
	select {
	case <-s.Ready:
		return true
	case <-r.Context().Done():
		return false
	}
}

// ReadBody reads a request body up to MaxBody, answering 413 beyond it.
func ReadBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	var b []byte
	var err error
	if r.ContentLength > MaxBody {
		// Refused before a byte of it is read.
		httpx.BodyError(w, &http.MaxBytesError{Limit: MaxBody}, "")
		return nil, false
	}
	if fb, ok := r.Body.(*fastBody); ok {
		// Read whole by the fast path already: taken without a copy.
		return fb.take(), true
	}
	if n := r.ContentLength; n >= 0 {
		// The usual case: one allocation of the announced size rather
		// than io.ReadAll's doubling from 512 bytes.
		b = make([]byte, n)
		if _, err = io.ReadFull(r.Body, b); errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
	} else {
		b, err = io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	}
	if err != nil {
		httpx.BodyError(w, err, "")
		return nil, false
	}
	return b, true
}

// dropHeaders are the request headers not carried to the component.
var dropHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer", "Content-Length", "Pragma", "Host", "Accept-Encoding"}

// passHeaders is h without dropHeaders, as the fields an envelope carries.
func passHeaders(h http.Header) httpx.Fields { return httpx.FieldsOf(h, dropHeaders...) }

func (s *Server) serviceCall(w http.ResponseWriter, r *http.Request) {
	s.callService(w, r, r.PathValue("service"))
}

// callService serves a service call to service (the path value).
func (s *Server) callService(w http.ResponseWriter, r *http.Request, service string) {
	if !s.waitReady(w, r) {
		return
	}
	body, ok := ReadBody(w, r)
	if !ok {
		return
	}
	req := &mesh.Envelope{
		Service: service,
		Method:  r.Method,
		Path:    servicePath(r),
		Query:   r.URL.RawQuery,
		Header:  passHeaders(r.Header),
		Body:    body,
	}
	s.Dispatch(w, r, req)
}

// servicePath is the path of a service call as the caller encoded it: the
// service gets "a%2Fb" or "%2E%2E" as they were written, never decoded into
// more segments or a dot segment that its router would resolve.
func servicePath(r *http.Request) string {
	// "", "kar", "v1", "service", {service}, "call", {path...}: the path
	// from the sixth slash on, taken without a copy.
	p := r.URL.EscapedPath()
	for i, n := 0, 0; i < len(p); i++ {
		if p[i] == '/' {
			if n++; n == 6 {
				return p[i:]
			}
		}
	}
	return "/" + r.PathValue("path")
}

// Dispatch sends req through the mesh as the Pragma header asks (sync,
// async or promise) and writes the outcome.
func (s *Server) Dispatch(w http.ResponseWriter, r *http.Request, req *mesh.Envelope) {
	ctx := r.Context()
	mode, err := pragma(r)
	if err != nil {
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	// What the request is for, read before the mesh fills in req.
	actor, target := req.ActorType != "", req.Service
	if actor {
		target = req.ActorType
	}
	var span tracing.Span
	if s.Tracer != nil {
		span = s.startSpan(r, req, mode, actor, target)
	}
	switch mode {
	case "async":
		if err := s.Mesh.Tell(ctx, req); err != nil {
			s.Metrics.Sent(metrics.Async, actor, target, metrics.NoResponse, 0)
			span.End(0, err)
			s.sendError(w, req, err)
			return
		}
		s.Metrics.Sent(metrics.Async, actor, target, http.StatusAccepted, 0)
		span.End(http.StatusAccepted, nil)
		text(w, http.StatusAccepted, "OK")
	case "promise":
		id, err := s.Mesh.Promise(ctx, req)
		if err != nil {
			s.Metrics.Sent(metrics.Promise, actor, target, metrics.NoResponse, 0)
			span.End(0, err)
			s.sendError(w, req, err)
			return
		}
		s.Metrics.Sent(metrics.Promise, actor, target, http.StatusAccepted, 0)
		span.End(http.StatusAccepted, nil)
		text(w, http.StatusAccepted, id)
	default:
		if s.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, s.RequestTimeout)
			defer cancel()
		}
		start := time.Now()
		resp, err := s.Mesh.Call(ctx, req)
		if err != nil {
			s.Metrics.Sent(metrics.Sync, actor, target, metrics.NoResponse, time.Since(start))
			span.End(0, err)
			s.sendError(w, req, err)
			return
		}
		s.Metrics.Sent(metrics.Sync, actor, target, resp.Status, time.Since(start))
		span.End(resp.Status, nil)
		WriteResponse(w, resp)
	}
}

// startSpan begins the caller's span of a request, continuing the trace
// of the component's request r, and puts its context in the request's
// headers for the callee.
func (s *Server) startSpan(r *http.Request, req *mesh.Envelope, mode string, actor bool, target string) tracing.Span {
	kind, typ := tracing.Call, "service"
	if mode != "" {
		kind = tracing.Send
	}
	if actor {
		typ = "actor"
		if req.Header == nil {
			// The host gives a method call without headers this
			// Content-Type; one with headers must carry it.
			req.Header = httpx.Fields{"Content-Type", "application/kar+json"}
		}
	}
	return s.Tracer.Start(httpx.FieldsOf(r.Header), &req.Header, kind, typ, target, req.Method, req.Path)
}

// pragma reads how a call is made from its Pragma header: "async",
// "promise", or "" (synchronous). HTTP's own "no-cache", which clients and
// proxies may add, is ignored; anything else is refused, so that a typo
// ("asynch") does not turn into a synchronous call.
func pragma(r *http.Request) (string, error) {
	mode := ""
	for _, v := range r.Header.Values("Pragma") {
		for p := range strings.SplitSeq(v, ",") {
			switch p = strings.ToLower(strings.TrimSpace(p)); p {
			case "", "no-cache":
			case "async", "promise":
				if mode != "" && mode != p {
					return "", fmt.Errorf("Pragma: %s and %s at once: a call is either async or promise", mode, p)
				}
				mode = p
			default:
				return "", fmt.Errorf("Pragma %q is not async or promise (leave it out for a synchronous call)", p)
			}
		}
	}
	return mode, nil
}

func (s *Server) sendError(w http.ResponseWriter, req *mesh.Envelope, err error) {
	switch {
	case errors.Is(err, mesh.ErrTooLarge):
		text(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		text(w, http.StatusGatewayTimeout, fmt.Sprintf("no response from %s within -request_timeout %s", req.Target(), s.RequestTimeout))
	case errors.Is(err, context.Canceled):
		// The caller went away; nobody reads the answer.
	default:
		s.Log.Warn("cannot send request", "target", req.Target(), "err", err)
		text(w, http.StatusServiceUnavailable, fmt.Sprintf("cannot send the request to %s: %v", req.Target(), err))
	}
}

// WriteResponse writes a response that came through the mesh.
func WriteResponse(w http.ResponseWriter, resp *mesh.Envelope) {
	h, wh := resp.Header, w.Header()
	for i := 0; i+1 < len(h); i += 2 {
		switch k := h[i]; {
		case k == "Content-Length":
		case wh[k] == nil:
			wh[k] = h[i+1 : i+2 : i+2] // the value in place: no slice of its own
		default:
			wh[k] = append(wh[k], h[i+1])
		}
	}
	if resp.Error && w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	if _, ok := w.Header()["Content-Type"]; !ok {
		// The component sent no Content-Type: neither does the sidecar,
		// as KAR (its Python SDK then hands the app the raw response). A
		// nil value keeps net/http, over HTTP/1.1 and h2, from sniffing
		// one from the body, and writes no header line.
		w.Header()["Content-Type"] = nil
	}
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	w.WriteHeader(status)
	w.Write(resp.Body)
}

func (s *Server) await(w http.ResponseWriter, r *http.Request) {
	if !s.waitReady(w, r) {
		return
	}
	b, ok := ReadBody(w, r)
	if !ok {
		return
	}
	id := strings.TrimSpace(string(b))
	var quoted string
	if json.Unmarshal(b, &quoted) == nil {
		id = quoted
	}
	if id == "" {
		text(w, http.StatusBadRequest, "the body must hold the request id returned by a Pragma: promise call")
		return
	}
	ctx := r.Context()
	if s.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, s.RequestTimeout)
		defer cancel()
	}
	var span tracing.Span
	if s.Tracer != nil {
		// A span of the wait for the answer, in the component's trace.
		var to httpx.Fields
		span = s.Tracer.Start(httpx.FieldsOf(r.Header), &to, tracing.Await, "promise", "", r.Method, r.URL.Path)
		span.SetAttribute("kar.request_id", id)
	}
	resp, err := s.Mesh.Await(ctx, id)
	if resp != nil {
		span.End(resp.Status, err)
	} else {
		span.End(0, err)
	}
	switch {
	case errors.Is(err, mesh.ErrUnknownRequest):
		text(w, http.StatusNotFound, fmt.Sprintf("no pending request with id %q (ids are valid once, on the sidecar that issued them)", id))
	case errors.Is(err, context.DeadlineExceeded):
		text(w, http.StatusGatewayTimeout, "no response within -request_timeout")
	case err != nil:
		// The caller went away (its context ended): nobody reads this.
		text(w, http.StatusInternalServerError, "cannot await the response: "+err.Error())
	default:
		WriteResponse(w, resp)
	}
}

func (s *Server) shutdown(w http.ResponseWriter, r *http.Request) {
	text(w, http.StatusOK, "OK")
	if s.Shutdown != nil {
		go s.Shutdown()
	}
}

// WriteJSON writes v as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
