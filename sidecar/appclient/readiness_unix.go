//go:build unix

package appclient

import (
	"net"
	"syscall"
)

// readiness waits until a connection has something to read (bytes, its
// end or an error) without a buffer to read into.
type readiness struct {
	rc      syscall.RawConn // nil: not a socket; wait returns at once
	checked bool            // the socket was looked at in this wait
	peek    [1]byte
	check   func(fd uintptr) bool // readyNow, made once per connection
}

func (r *readiness) init(nc net.Conn) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	r.rc = rc
	r.check = r.readyNow
}

// wait parks until the socket is readable, honouring nc's deadline (an
// expired one returns os.ErrDeadlineExceeded, as a read would).
func (r *readiness) wait() error {
	if r.rc == nil {
		return nil
	}
	r.checked = false
	return r.rc.Read(r.check)
}

// readyNow is RawConn.Read's callback. Its first call looks at the socket:
// Go's poller forgets a readiness it reported before the wait began, so
// bytes that came already would otherwise wait for more that never come.
// The peek costs what the read would (one system call returning EAGAIN
// when nothing came yet). Once the poller wakes it, the socket has news:
// should the read still find nothing, it waits again itself.
func (r *readiness) readyNow(fd uintptr) bool {
	if r.checked {
		return true
	}
	r.checked = true
	_, _, err := syscall.Recvfrom(int(fd), r.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err != syscall.EAGAIN
}
