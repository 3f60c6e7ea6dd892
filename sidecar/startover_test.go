package sidecar

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

func TestStartOver(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	cases := []struct {
		name     string
		after    time.Duration
		answers  int  // requests answered before the wait
		cancel   bool // ctx ends before the start is over
		wantDrop bool
	}{
		{"first answer ends the start", time.Hour, 1, false, true},
		{"later answers change nothing", time.Hour, 3, false, true},
		{"no answer: the start ends after a while", 10 * time.Millisecond, 0, false, true},
		{"a sidecar stopping drops nothing", time.Hour, 0, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dropped := make(chan struct{}, 1)
			s := newStartOver()
			s.after = c.after
			s.drop = func() error { dropped <- struct{}{}; return nil }
			for range c.answers {
				s.answered()
			}
			ctx, cancel := context.WithCancel(context.Background())
			if c.cancel {
				cancel()
			}
			done := make(chan struct{})
			go func() { s.dropPagesWhenOver(ctx, log); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("dropPagesWhenOver did not return")
			}
			cancel()
			if got := len(dropped) == 1; got != c.wantDrop {
				t.Errorf("dropped: %v, want %v", got, c.wantDrop)
			}
		})
	}
}
