package testenv

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// testLogger sends slog records to t.Logf until the test ends: t.Logf after
// that panics, and background goroutines may still log.
func testLogger(t testing.TB, name string) *slog.Logger {
	h := &tlogHandler{name: name, sink: &tlogSink{t: t}}
	t.Cleanup(h.sink.close)
	return slog.New(h)
}

type tlogSink struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (s *tlogSink) logf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.done {
		s.t.Logf(format, args...)
	}
}

func (s *tlogSink) close() {
	s.mu.Lock()
	s.done = true
	s.mu.Unlock()
}

type tlogHandler struct {
	name  string
	sink  *tlogSink
	attrs []slog.Attr
}

func (h *tlogHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h *tlogHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s", h.name, r.Level, r.Message)
	for _, a := range h.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	h.sink.logf("%s", b.String())
	return nil
}

func (h *tlogHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &tlogHandler{name: h.name, sink: h.sink, attrs: append(append([]slog.Attr{}, h.attrs...), attrs...)}
}

func (h *tlogHandler) WithGroup(name string) slog.Handler {
	return &tlogHandler{name: h.name + "." + name, sink: h.sink, attrs: h.attrs}
}
