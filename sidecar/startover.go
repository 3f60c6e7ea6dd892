package sidecar

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// startOver tells when a sidecar's start is over, so that what only the
// start needed (the executable's pages its start read: dropStartupPages)
// is let go then and not on the way of the first request.
//
// A new replica's first request waits for the join and the component,
// and a request that is waiting for a replica waits for all of its start.
// Dropping the pages at the join put the drop (reading /proc/self/smaps,
// 1.5–2.5 ms here) on that request's path, and then the faults of every
// page the request's code had used during the start: 6.5 ms of a 51.6 ms
// first request (medians of 20, docs/performance.md). The start is over
// once the component has answered its first request, or after
// startOverAfter without one (a sidecar of a client, or of a component no
// request reaches yet).
type startOver struct {
	once   sync.Once
	served chan struct{}
	after  time.Duration // startOverAfter
	drop   func() error  // dropStartupPages
}

// startOverAfter is how long after the join a sidecar whose component
// answered no request waits to call its start over.
const startOverAfter = time.Second

func newStartOver() *startOver {
	return &startOver{served: make(chan struct{}), after: startOverAfter, drop: dropStartupPages}
}

// answered is called each time the component answered a request; only the
// first counts (a sync.Once: one atomic load on the calls after it).
func (s *startOver) answered() { s.once.Do(func() { close(s.served) }) }

// dropPagesWhenOver drops the start's pages once the start is over, unless
// ctx ends first.
func (s *startOver) dropPagesWhenOver(ctx context.Context, log *slog.Logger) {
	t := time.NewTimer(s.after)
	defer t.Stop()
	select {
	case <-s.served:
	case <-t.C:
	case <-ctx.Done():
		return
	}
	if err := s.drop(); err != nil {
		log.Debug("cannot drop the executable's startup pages", "err", err)
	}
}
