package mesh

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// pool runs tasks on goroutines that live on between tasks. Serving a
// request goes deep (HTTP client, encoding, producing): a fresh goroutine
// grows and copies its stack every time, a reused one has grown already.
// A task never waits for a free worker: with none idle, a new one starts.
//
// The worker idle the shortest takes the next task. Handed out in turn
// (a channel's FIFO), every worker of a burst stayed in use for ever, a
// stack each, and idle ones had their stacks halved by each collection
// only to grow them again on their next task; taken from the top of a
// stack, the workers a load needs stay busy and the others retire.
type pool struct {
	idle time.Duration

	mu      sync.Mutex
	waiting []*worker // idle, the most recently idle last

	live atomic.Int32 // workers alive, for tests
}

// worker is an idle worker's inbox: Go hands its task over there.
type worker struct{ tasks chan task }

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

func newPool(idle time.Duration) *pool { return &pool{idle: idle} }

// Go runs t on the worker idle the shortest, or on a new one.
func (p *pool) Go(t task) {
	p.mu.Lock()
	if n := len(p.waiting); n > 0 {
		w := p.waiting[n-1]
		p.waiting[n-1] = nil
		p.waiting = p.waiting[:n-1]
		p.mu.Unlock()
		w.tasks <- t // buffered: it never waits
		return
	}
	p.mu.Unlock()
	p.live.Add(1)
	go p.work(t)
}

func (p *pool) work(t task) {
	defer p.live.Add(-1)
	w := &worker{tasks: make(chan task, 1)}
	timer := time.NewTimer(p.idle)
	defer timer.Stop()
	for {
		t.run()
		t = task{} // hold nothing of it while idle
		timer.Reset(p.idle)
		p.mu.Lock()
		p.waiting = append(p.waiting, w)
		p.mu.Unlock()
		select {
		case t = <-w.tasks:
		case <-timer.C:
			if p.retire(w) {
				return
			}
			// Go took w off the stack as its timer fired: the task
			// is on its way.
			t = <-w.tasks
		}
	}
}

// retire takes w off the idle stack, unless Go has just taken it.
func (p *pool) retire(w *worker) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := slices.Index(p.waiting, w) // the longest idle are at the bottom
	if i < 0 {
		return false
	}
	p.waiting = slices.Delete(p.waiting, i, i+1)
	return true
}
