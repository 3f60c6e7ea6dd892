package mesh

import "time"

// pool runs tasks on goroutines that live on between tasks. Serving a
// request goes deep (HTTP client, encoding, producing): a fresh goroutine
// grows and copies its stack every time, a reused one has grown already.
// A task never waits for a free worker: with none idle, a new one starts.
type pool struct {
	tasks chan task
	idle  time.Duration
}

// task is a request for a worker to serve: a value rather than a closure,
// so that handing one over allocates nothing.
type task struct {
	m      *Mesh
	env    *Envelope
	finish func()
	// once: run it through runOnce (it may have run already).
	once bool
	// fn, when set, is the task instead.
	fn func()
}

func (t task) run() {
	switch {
	case t.fn != nil:
		t.fn()
	case t.once:
		t.m.runOnce(t.env, t.finish, func() { t.m.serveRequest(t.env, t.finish) })
	default:
		t.m.serveRequest(t.env, t.finish)
	}
}

func newPool(idle time.Duration) *pool { return &pool{tasks: make(chan task), idle: idle} }

// Go runs t on an idle worker, or on a new one.
func (p *pool) Go(t task) {
	select {
	case p.tasks <- t:
	default:
		go p.work(t)
	}
}

func (p *pool) work(t task) {
	timer := time.NewTimer(p.idle)
	defer timer.Stop()
	for {
		t.run()
		t = task{} // hold nothing of it while idle
		timer.Reset(p.idle)
		select {
		case t = <-p.tasks:
		case <-timer.C:
			return
		}
	}
}
