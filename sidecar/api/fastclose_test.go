package api

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestFastPathCloseIdleKeepAlive: a connection left open by its client
// after an answered call (HTTP/1.1 keep-alive, as Go's and most clients
// do) is idle, and Close closes it at once. It was taken for a call in
// progress, so a sidecar without a component took its whole 30 s grace
// to stop on SIGTERM (bench/scale's caller sidecars).
func TestFastPathCloseIdleKeepAlive(t *testing.T) {
	ready := make(chan struct{})
	close(ready)
	s := &Server{Log: slog.New(slog.DiscardHandler), Ready: ready, Extra: fastRoutes(&waits{release: make(chan struct{})})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(conn, "POST /kar/v1/service/test/call/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || body(resp) != "hi" {
		t.Fatalf("call: %v %v", resp, err)
	}
	// The connection stays open, idle. Close must not wait for it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	s.Close(ctx)
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s with an idle keep-alive connection open, want at once", d)
	}
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if _, err := br.ReadByte(); err == nil {
		t.Error("the idle connection is still open after Close")
	}
}
