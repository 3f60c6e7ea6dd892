//go:build unix

package appclient

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// tcpPair is a connected pair of TCP sockets on the loopback.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// arrived waits, outside Go's poller, until c has a byte to read.
func arrived(t *testing.T, c net.Conn) {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		var b [1]byte
		rc.Control(func(fd uintptr) {
			n, _, _ = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		})
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the byte written never arrived")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestReadinessWait(t *testing.T) {
	t.Run("bytes that came before the wait", func(t *testing.T) {
		// The poller reported them before anyone waited; a wait that
		// only trusted the poller would sleep until the deadline.
		c, s := tcpPair(t)
		var r readiness
		r.init(c)
		s.Write([]byte("HTTP/1.1 200 OK\r\n"))
		arrived(t, c)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if err := r.wait(); err != nil {
			t.Fatalf("wait: %v, want at once", err)
		}
	})
	t.Run("bytes that come during the wait", func(t *testing.T) {
		c, s := tcpPair(t)
		var r readiness
		r.init(c)
		go func() {
			time.Sleep(20 * time.Millisecond) // let the wait begin first
			s.Write([]byte("x"))
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := r.wait(); err != nil {
			t.Fatalf("wait: %v", err)
		}
		b := make([]byte, 1)
		if n, err := c.Read(b); n != 1 || err != nil {
			t.Fatalf("read after the wait: %d, %v", n, err)
		}
	})
	t.Run("the end of the connection", func(t *testing.T) {
		c, s := tcpPair(t)
		var r readiness
		r.init(c)
		s.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if err := r.wait(); err != nil {
			t.Fatalf("wait: %v, want at once (the read then sees the end)", err)
		}
	})
	t.Run("nothing before the deadline", func(t *testing.T) {
		c, _ := tcpPair(t)
		var r readiness
		r.init(c)
		c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
		if err := r.wait(); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("wait: %v, want %v", err, os.ErrDeadlineExceeded)
		}
	})
}
