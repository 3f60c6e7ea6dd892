// Package appclient is the sidecar's HTTP client to its own component on
// localhost: HTTP/1.1 on its own connection pool (direct.go), or h2c with
// prior knowledge on net/http when -h2c is given.
package appclient

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// Client calls the component at 127.0.0.1:port.
type Client struct {
	base   string
	host   string
	port   int
	hc     *http.Client // h2c, and the benchmarks' baseline
	direct bool
	dialer net.Dialer
	pool   pool
}

// New returns a client for the component on port.
func New(port int, h2c bool) *Client {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:        512,
		MaxIdleConnsPerHost: 512,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	if h2c {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetUnencryptedHTTP2(true)
	}
	host := "127.0.0.1:" + strconv.Itoa(port)
	return &Client{
		base: "http://" + host, host: host, port: port, hc: &http.Client{Transport: tr},
		direct: !h2c, dialer: net.Dialer{Timeout: 2 * time.Second},
	}
}

// Response is what the component answered.
type Response struct {
	Status int
	Header httpx.Fields
	Body   []byte
}

// Unreachable wraps errors where the request never got an answer from the
// component (not listening, connection reset): the caller may retry it.
type Unreachable struct{ Err error }

func (u *Unreachable) Error() string { return "component unreachable: " + u.Err.Error() }
func (u *Unreachable) Unwrap() error { return u.Err }

// hopHeaders are not passed between the mesh and the component.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade", "Te", "Trailer", "Content-Length", "Pragma", "Host"}

// Do sends one request to the component.
func (c *Client) Do(ctx context.Context, method, path, query string, header httpx.Fields, body []byte) (*Response, error) {
	if c.direct {
		return c.doDirect(ctx, method, path, query, header, body)
	}
	url := c.base + path
	if query != "" {
		url += "?" + query
	}
	var rd io.Reader
	if len(body) > 0 {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, fmt.Errorf("bad request to component: %w", err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header[header[i]] = append(req.Header[header[i]], header[i+1])
	}
	for _, h := range hopHeaders {
		req.Header.Del(h)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, &Unreachable{Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &Unreachable{Err: err}
	}
	return &Response{Status: resp.StatusCode, Header: httpx.FieldsOf(resp.Header, hopHeaders...), Body: b}, nil
}

// WaitListening returns once the component accepts connections, or when
// ctx ends.
func (c *Client) WaitListening(ctx context.Context) error {
	addr := "127.0.0.1:" + strconv.Itoa(c.port)
	start := time.Now()
	for {
		conn, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			conn.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(listenPoll(time.Since(start))):
		}
	}
}

// listenPoll is how long WaitListening waits between two tries, after
// waiting so long already. A new replica's first request waits for the
// component to listen, so a component that starts fast is tried every
// millisecond (a refused connection on the loopback costs a few µs); one
// that takes longer is tried less often.
func listenPoll(waited time.Duration) time.Duration {
	if waited < 250*time.Millisecond {
		return time.Millisecond
	}
	return 5 * time.Millisecond
}
