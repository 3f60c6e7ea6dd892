package mesh

import (
	"context"
	"sync/atomic"
	"time"
)

// workCount counts the mesh's work in progress (records being served,
// forwarded or held). Unlike a sync.WaitGroup it may be waited on while
// work is still being added: Leave waits while records keep arriving, and
// a WaitGroup whose count rose from zero during a Wait panicked the
// stopping sidecar ("WaitGroup is reused before previous Wait has
// returned").
type workCount struct{ n atomic.Int64 }

func (w *workCount) Add(d int) { w.n.Add(int64(d)) }

func (w *workCount) Done() { w.n.Add(-1) }

// Wait returns once no work is in progress, or with ctx's error.
func (w *workCount) Wait(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for w.n.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// beginServe counts a request taken for this sidecar's component.
func (m *Mesh) beginServe() {
	m.work.Add(1)
	m.serving.Add(1)
}

// endServe counts a request taken for the component as finished with.
func (m *Mesh) endServe() {
	m.serving.Add(-1)
	m.work.Done()
}
