package api

import (
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// DefaultIdleTimeout closes an HTTP/1.1 connection that has carried no
// request for this long (Server.IdleTimeout when 0): longer than the idle
// timeouts of clients (Node's agent 5s, Go's transport 90s), so that a
// client closes first in practice and never sends on a connection being
// closed.
const DefaultIdleTimeout = 2 * time.Minute

// idleConn is a connection whose read deadline, while it waits idle for
// the next HTTP/1.1 request, is the idle timeout rather than none: every
// connection net/http's server gets from the fast path (fast.go) is one.
//
// http.Server.IdleTimeout cannot be used: it also becomes the idle timeout
// of h2c connections, and kar-sdk opens one h2c session when it loads and
// never opens another. An h2c connection is served by the HTTP/2 server
// without going through the HTTP/1.1 idle state, so it is never cut here.
type idleConn struct {
	net.Conn
	idle    time.Duration
	waiting atomic.Bool // in http.StateIdle
}

// SetReadDeadline: the HTTP/1.1 server lifts the deadline (zero) when it
// starts waiting for the next request on a connection; bound that wait.
func (c *idleConn) SetReadDeadline(t time.Time) error {
	if t.IsZero() && c.waiting.Load() {
		t = time.Now().Add(c.idle)
	}
	return c.Conn.SetReadDeadline(t)
}

// CloseWrite lets the server half-close the connection after an answer to
// a request whose body it did not read (net/http does so on a TCP
// connection, so that the client reads the answer instead of a reset).
func (c *idleConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// trackIdle is the server's ConnState hook: it marks the connections
// waiting for their next HTTP/1.1 request, and lifts the idle deadline
// once a request has come (the server, with no ReadTimeout, would have
// left none; limitBody sets the body's own).
func trackIdle(c net.Conn, state http.ConnState) {
	ic, ok := c.(*idleConn)
	if !ok {
		return // an h2c connection, wrapped by the HTTP/2 server
	}
	ic.waiting.Store(state == http.StateIdle)
	if state == http.StateActive {
		ic.Conn.SetReadDeadline(time.Time{})
	}
}
