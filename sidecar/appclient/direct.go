package appclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// The direct path speaks HTTP/1.1 on pooled connections in the calling
// goroutine. net/http's Transport gives every connection a read and a
// write goroutine and hands each request and response between them over
// channels; on a busy sidecar that was about a fifth of its CPU.

const (
	// Node's http server closes keep-alive connections idle for 5 s:
	// dropping ours well before that keeps the race where it closes one
	// while a request is on its way rare (the retry covers the rest).
	maxIdleAge = 3 * time.Second
	maxIdle    = 512
	bufSize    = 8 << 10
	// Larger Content-Lengths are read with io.ReadAll, so a wrong header
	// cannot make us allocate it all up front.
	maxPrealloc = 64 << 20
	// Request bodies larger than this are written by a goroutine of their
	// own while the response is read: a component may answer (413, say)
	// before it read the body, or stream its answer while reading, and
	// writing all first would then fail or block both sides for ever.
	// Smaller ones fit the socket buffers.
	concurrentWrite = 64 << 10
)

// conn is one persistent connection to the component. It holds no read
// buffer: one comes from readers once the response has begun to arrive
// (readiness.wait), so that a sidecar with 64 calls at its component holds
// as many buffers as responses being read, not one per call in flight
// (0.5 MB of its live heap).
type conn struct {
	nc       net.Conn
	idleAt   time.Time
	deadline bool // nc has a deadline that the next request must clear
	readable readiness
}

// pool keeps idle connections as a stack: the most recently used one is
// the least likely to have been closed by the component, and the stack is
// ordered by idleAt, so stale ones are all at the bottom.
type pool struct {
	mu   sync.Mutex
	idle []*conn
}

func (p *pool) get() *conn {
	now := time.Now()
	p.mu.Lock()
	n := len(p.idle)
	if n == 0 {
		p.mu.Unlock()
		return nil
	}
	pc := p.idle[n-1]
	if now.Sub(pc.idleAt) > maxIdleAge {
		stale := p.idle
		p.idle = nil
		p.mu.Unlock()
		closeAll(stale)
		return nil
	}
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	p.mu.Unlock()
	return pc
}

func (p *pool) put(pc *conn) {
	pc.idleAt = time.Now()
	p.mu.Lock()
	// When load falls after a burst only the top of the stack is used:
	// the connections below would otherwise sit closed by the component
	// until the next burst.
	k := 0
	for k < len(p.idle) && pc.idleAt.Sub(p.idle[k].idleAt) > maxIdleAge {
		k++
	}
	var stale []*conn
	if k > 0 {
		stale = slices.Clone(p.idle[:k])
		p.idle = slices.Delete(p.idle, 0, k)
	}
	full := len(p.idle) >= maxIdle
	if !full {
		p.idle = append(p.idle, pc)
	}
	p.mu.Unlock()
	closeAll(stale)
	if full {
		pc.nc.Close()
	}
}

func closeAll(cs []*conn) {
	for _, c := range cs {
		c.nc.Close()
	}
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	nc, err := c.dialer.DialContext(ctx, "tcp", c.host)
	if err != nil {
		return nil, err
	}
	pc := &conn{nc: nc}
	pc.readable.init(nc)
	return pc, nil
}

// readers are the buffers responses are read through, each taken for the
// read of one response and given back after it.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufSize) }}

// writers are the buffers requests are written through. A connection
// needs one only while it writes a request, not while it waits for the
// answer: shared, they are as many as the requests being written, where
// one per connection made 8 KiB for each call in flight (0.5 MB of a
// sidecar's live heap with 64 in flight).
var writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufSize) }}

// send writes a request on nc through a pooled writer.
func send(nc net.Conn, host, method, path, query string, header httpx.Fields, body []byte) error {
	bw := writers.Get().(*bufio.Writer)
	bw.Reset(nc)
	writeRequest(bw, host, method, path, query, header, body)
	err := bw.Flush()
	bw.Reset(nil) // hold no connection while pooled
	writers.Put(bw)
	return err
}

// headRequest tells http.ReadResponse that a response has no body; it is
// only read, so one serves every call.
var headRequest = &http.Request{Method: http.MethodHead}

// aLongTimeAgo is a deadline that makes pending I/O fail at once.
var aLongTimeAgo = time.Unix(1, 0)

func (c *Client) doDirect(ctx context.Context, method, path, query string, header httpx.Fields, body []byte) (*Response, error) {
	if method == "" {
		method = http.MethodGet
	}
	if !httpx.IsToken(method) {
		return nil, fmt.Errorf("bad request to component: invalid method %q", method)
	}
	path, query, err := requestTarget(c.base, path, query)
	if err != nil {
		return nil, fmt.Errorf("bad request to component: %w", err)
	}
	if err := checkHeader(header); err != nil {
		return nil, fmt.Errorf("bad request to component: %w", err)
	}
	pc := c.pool.get()
	for retried := false; ; retried = true {
		reused := pc != nil
		if !reused {
			if pc, err = c.dial(ctx); err != nil {
				return nil, &Unreachable{Err: err}
			}
		}
		resp, reuse, answered, err := c.exchange(ctx, pc, method, path, query, header, body)
		if err == nil {
			if reuse {
				c.pool.put(pc)
			} else {
				pc.nc.Close()
			}
			return resp, nil
		}
		pc.nc.Close()
		// A pooled connection the component closed while it was idle
		// fails like this, before any of its code saw the request.
		if reused && !retried && !answered && connDropped(err) {
			pc = nil
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The only deadlines set come from ctx.
			if err = ctx.Err(); err == nil {
				err = context.DeadlineExceeded
			}
		}
		return nil, &Unreachable{Err: err}
	}
}

func connDropped(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// exchange writes one request on pc and reads its response. answered
// tells whether any byte of a response arrived; reuse whether pc can
// carry another request.
func (c *Client) exchange(ctx context.Context, pc *conn, method, path, query string, header httpx.Fields, body []byte) (resp *Response, reuse, answered bool, err error) {
	if dl, ok := ctx.Deadline(); ok {
		pc.nc.SetDeadline(dl)
		pc.deadline = true
	} else if pc.deadline {
		pc.nc.SetDeadline(time.Time{})
		pc.deadline = false
	}
	// Background contexts (the mesh's deliveries) cannot be cancelled:
	// skipping AfterFunc for them saves its allocations.
	if ctx.Done() != nil {
		stop := context.AfterFunc(ctx, func() { pc.nc.SetDeadline(aLongTimeAgo) })
		defer func() {
			if !stop() {
				reuse = false // the deadline in the past is still set
			}
		}()
	}

	var wrote chan error // the writer's outcome, for large bodies
	if len(body) > concurrentWrite {
		wrote = make(chan error, 1)
		go func() {
			wrote <- send(pc.nc, c.host, method, path, query, header, body) // a close of pc by the caller ends it
		}()
	} else if err = send(pc.nc, c.host, method, path, query, header, body); err != nil {
		return nil, false, false, err
	}
	if wrote != nil {
		defer func() {
			// An answer that came before the whole request was sent ends
			// the connection's use: the rest of the body may still be
			// on its way.
			select {
			case werr := <-wrote:
				reuse = reuse && werr == nil
			default:
				reuse = false
			}
		}()
	}
	// The component works on the request now; the buffer is needed once
	// its answer arrives.
	if err = pc.readable.wait(); err != nil {
		return nil, false, false, err
	}
	br := readers.Get().(*bufio.Reader)
	br.Reset(pc.nc)
	defer func() {
		// A connection kept for another request has nothing buffered
		// (reuse demands it), so nothing of it is lost here.
		br.Reset(nil)
		readers.Put(br)
	}()
	if _, err = br.Peek(1); err != nil {
		return nil, false, false, err
	}
	var req *http.Request
	if method == http.MethodHead {
		req = headRequest
	} else if resp, closing, ok := readPlain(br); ok {
		// Bytes past the response mean we lost the framing, as below.
		return resp, !closing && br.Buffered() == 0, true, nil
	}
	var r *http.Response
	for n := 0; ; n++ {
		if r, err = http.ReadResponse(br, req); err != nil {
			return nil, false, true, err
		}
		// net/http's Transport skips interim responses the same way.
		if r.StatusCode/100 != 1 || r.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n == 5 {
			return nil, false, true, errors.New("too many 1xx responses")
		}
	}
	b, err := readBody(r)
	if err != nil {
		return nil, false, true, err
	}
	// r.Close covers both Connection: close and a body delimited by the
	// connection's end; bytes past the response mean we lost the framing.
	reuse = !r.Close && r.StatusCode != http.StatusSwitchingProtocols && br.Buffered() == 0
	return &Response{Status: r.StatusCode, Header: httpx.FieldsOf(r.Header, hopHeaders...), Body: b}, reuse, true, nil
}

// readPlain reads a plain response whole from br's buffer without
// net/http's reader, which made a dozen allocations per response: HTTP/1.1,
// a final status from 200 to 599, a Content-Length body already in the
// buffer (none for 204 and 304), no Transfer-Encoding, Trailer or Pragma
// (net/http adds a Cache-Control for it), every header line well formed.
// It returns what exchange makes of net/http's response: hop headers
// dropped, closing when the component said Connection: close. ok false
// leaves br as it was, for http.ReadResponse, which takes everything else.
func readPlain(br *bufio.Reader) (resp *Response, closing, ok bool) {
	buf, _ := br.Peek(br.Buffered())
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, false, false
	}
	// "HTTP/1.1 200" and an optional reason phrase.
	line := buf[:bytes.IndexByte(buf, '\n')+1]
	if len(line) < 14 || string(line[:9]) != "HTTP/1.1 " || line[12] != ' ' && line[12] != '\r' || line[len(line)-2] != '\r' {
		return nil, false, false
	}
	status := 0
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return nil, false, false
		}
		status = status*10 + int(d-'0')
	}
	if status < 200 || status > 599 {
		return nil, false, false
	}
	bodyless := status == http.StatusNoContent || status == http.StatusNotModified
	rest := ""
	if len(line) < end+2 {
		rest = string(buf[len(line) : end+2]) // one string for every header
	}
	count := strings.Count(rest, "\r\n")
	h := make(httpx.Fields, 0, 2*count)
	length := int64(-1)
	for rest != "" {
		var kv string
		kv, rest, _ = strings.Cut(rest, "\r\n")
		k, v, found := strings.Cut(kv, ":")
		if !found || !httpx.IsToken(k) || !httpx.ValidFieldValue(v) {
			return nil, false, false
		}
		v = strings.Trim(v, " \t")
		k = textproto.CanonicalMIMEHeaderKey(k)
		switch k {
		case "Content-Length":
			// Digits only, once, as net/http takes it; 204 and 304
			// have no body whatever they say.
			if length >= 0 || bodyless || v == "" || strings.Trim(v, "0123456789") != "" {
				return nil, false, false
			}
			var err error
			if length, err = strconv.ParseInt(v, 10, 64); err != nil {
				return nil, false, false
			}
		case "Transfer-Encoding", "Trailer", "Pragma":
			return nil, false, false
		case "Connection":
			closing = closing || hasToken(v, "close")
		}
		if slices.Contains(hopHeaders, k) {
			continue
		}
		h = append(h, k, v)
	}
	if bodyless {
		length = 0
	}
	if length < 0 || length > int64(len(buf)-end-4) {
		// Read to the connection's end, or still on its way.
		return nil, false, false
	}
	var body []byte
	if length > 0 {
		body = bytes.Clone(buf[end+4 : end+4+int(length)])
	}
	br.Discard(end + 4 + int(length))
	return &Response{Status: status, Header: h, Body: body}, closing, true
}

// hasToken tells whether the comma-separated list v holds token, in any
// case (httpguts.HeaderValuesContainsToken, as net/http decides to close).
func hasToken(v, token string) bool {
	for v != "" {
		var t string
		t, v, _ = strings.Cut(v, ",")
		if strings.EqualFold(strings.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

func readBody(r *http.Response) ([]byte, error) {
	defer r.Body.Close()
	if r.Body == http.NoBody {
		return nil, nil // a HEAD's Content-Length is not a body's
	}
	if n := r.ContentLength; n > 0 && n <= maxPrealloc {
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	b, err := io.ReadAll(r.Body)
	if len(b) == 0 {
		b = nil
	}
	return b, err
}

// writeRequest buffers the request as net/http would write it; write
// errors stick in bw and come out of its Flush.
func writeRequest(bw *bufio.Writer, host, method, path, query string, header httpx.Fields, body []byte) {
	bw.WriteString(method)
	bw.WriteByte(' ')
	bw.WriteString(path)
	if query != "" {
		bw.WriteByte('?')
		bw.WriteString(query)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(host)
	bw.WriteString("\r\n")
	if !header.Has("User-Agent") {
		bw.WriteString("User-Agent: Go-http-client/1.1\r\n")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if isHop(header[i]) {
			continue
		}
		bw.WriteString(header[i])
		bw.WriteString(": ")
		bw.WriteString(textproto.TrimString(header[i+1]))
		bw.WriteString("\r\n")
	}
	// Like net/http: methods that carry a body say so even when it is empty.
	if len(body) > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(body)), 10))
		bw.WriteString("\r\n")
	}
	bw.WriteString("\r\n")
	bw.Write(body)
}

// isHop matches names in any case: a hop header passed through in
// lower case would break the framing we write.
func isHop(k string) bool {
	for _, h := range hopHeaders {
		if len(k) == len(h) && strings.EqualFold(k, h) {
			return true
		}
	}
	return false
}

// checkHeader refuses what net/http's Transport refuses, so a header from
// the mesh cannot inject lines into the request.
func checkHeader(header httpx.Fields) error {
	for i := 0; i+1 < len(header); i += 2 {
		if !httpx.IsToken(header[i]) {
			return fmt.Errorf("invalid header field name %q", header[i])
		}
		if !httpx.ValidFieldValue(header[i+1]) {
			return fmt.Errorf("invalid header field value for %q", header[i])
		}
	}
	return nil
}

// requestTarget returns the request line's target as net/http writes it
// for base+path?query, split in path and query. Targets of plain bytes
// come out unchanged, so only the others pay for url.Parse.
func requestTarget(base, path, query string) (string, string, error) {
	if strings.HasPrefix(path, "/") && plain(path, pathChar) && plain(query, queryChar) {
		return path, query, nil
	}
	target := base + path
	if query != "" {
		target += "?" + query
	}
	u, err := url.Parse(target)
	if err != nil {
		return "", "", err
	}
	return u.RequestURI(), "", nil
}

func plain(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// pathChar: bytes url.URL.EscapedPath leaves alone ('%' is not, so that
// escapes go through url.Parse).
func pathChar(b byte) bool {
	return 'a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@/", b) >= 0
}

// queryChar: bytes url.Parse keeps verbatim in RawQuery.
func queryChar(b byte) bool {
	return ' ' < b && b < 0x7f && b != '#'
}
