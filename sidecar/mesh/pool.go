package mesh

import "time"

// pool runs tasks on goroutines that live on between tasks. Serving a
// request goes deep (HTTP client, encoding, producing): a fresh goroutine
// grows and copies its stack every time, a reused one has grown already.
// A task never waits for a free worker: with none idle, a new one starts.
type pool struct {
	tasks chan func()
	idle  time.Duration
}

func newPool(idle time.Duration) *pool { return &pool{tasks: make(chan func()), idle: idle} }

// Go runs f on an idle worker, or on a new one.
func (p *pool) Go(f func()) {
	select {
	case p.tasks <- f:
	default:
		go p.work(f)
	}
}

func (p *pool) work(f func()) {
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		f()
		t.Reset(p.idle)
		select {
		case f = <-p.tasks:
		case <-t.C:
			return
		}
	}
}
