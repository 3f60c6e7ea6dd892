package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// DefaultBodyTimeout bounds how long a request body may take to arrive
// when Server.BodyTimeout is not set. Bodies are at most MaxBody (1 MB)
// and come from a component next to the sidecar.
const DefaultBodyTimeout = 10 * time.Second

// guard is the front door of every route. It refuses request paths that
// would be routed otherwise than they read, and names kar cannot keep
// (httpx.CheckName), and bounds the time a request body may take.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		path := r.URL.EscapedPath()
		if !httpx.Canonical(path) {
			// Go's ServeMux would redirect to the cleaned path: another
			// route than the caller wrote (../../actor/...).
			text(w, http.StatusBadRequest, fmt.Sprintf(`the path %q has ".", ".." or empty segments, which kar does not resolve; percent-encode a name that is "." or ".." (%%2E)`, path))
			return
		}
		if err := checkSegments(path); err != nil {
			text(w, http.StatusBadRequest, "bad request path: "+err.Error())
			return
		}
		s.limitBody(w, r)
		next.ServeHTTP(w, r)
	})
}

// checkSegments checks each segment of a request path as a name, except
// the path of a service call, which is the service's own and passes
// through as the caller encoded it.
func checkSegments(escaped string) error {
	// "", "kar", "v1", "service", {service}, "call", {path...}
	i, service := 0, false
	for seg := range strings.SplitSeq(escaped, "/") {
		switch {
		case i == 1:
			service = seg == "kar"
		case i == 3:
			service = service && seg == "service"
		case i == 5 && service && seg == "call":
			return nil
		}
		if err := checkSegment(seg); err != nil {
			return err
		}
		i++
	}
	return nil
}

func checkSegment(seg string) error {
	if seg == "" {
		return nil
	}
	name := seg
	if strings.IndexByte(seg, '%') >= 0 {
		var err error
		if name, err = url.PathUnescape(seg); err != nil {
			return fmt.Errorf("the segment %q: %w", seg, err)
		}
	}
	return httpx.CheckName("path segment", name)
}

// limitBody bounds the time the body of r may take to arrive with a read
// deadline of its own, lifted once the body is read (so a handler that
// waits long for its answer, as POST /kar/v1/await does, is not cut).
// http.Server.ReadTimeout cannot do this: on HTTP/1 it also ends the
// request's context at the deadline, and on h2c it becomes the idle
// timeout of the connection, which kar-sdk opens once and never reopens.
func (s *Server) limitBody(w http.ResponseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	if _, ok := r.Body.(*fastBody); ok {
		return // read whole already, by the fast path
	}
	d := s.BodyTimeout
	if d <= 0 {
		d = DefaultBodyTimeout
	}
	if http.NewResponseController(w).SetReadDeadline(time.Now().Add(d)) != nil {
		return
	}
	r.Body = &deadlineBody{ReadCloser: r.Body, w: w, left: r.ContentLength, timeout: d}
}

// deadlineBody lifts the read deadline once the body is read: at its end,
// or when its Content-Length is reached (io.ReadFull stops there without
// seeing the end on HTTP/2).
type deadlineBody struct {
	io.ReadCloser
	w       http.ResponseWriter
	left    int64 // bytes still announced, -1 when unknown
	timeout time.Duration
	lifted  bool
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		err = &bodyTimeoutError{b.timeout}
	}
	// Lifted once the body is in; not after a failed read, so that the
	// server's discarding of what is left stays bounded too.
	if !b.lifted && (err == io.EOF || err == nil && b.left == 0) {
		b.lifted = true
		http.NewResponseController(b.w).SetReadDeadline(time.Time{})
	}
	return n, err
}

// bodyTimeoutError is a request body that did not arrive in time.
type bodyTimeoutError struct{ timeout time.Duration }

func (e *bodyTimeoutError) Error() string {
	return fmt.Sprintf("the request body did not arrive within %s", e.timeout)
}

func (e *bodyTimeoutError) Is(target error) bool { return target == os.ErrDeadlineExceeded }
