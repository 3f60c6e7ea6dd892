package mesh

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// After a burst, a steady trickle of tasks is served by the worker idle the
// shortest, so the others retire: their stacks go with them.
func TestPoolRetiresWorkersALoadNoLongerNeeds(t *testing.T) {
	const burst = 10
	p := newPool(50 * time.Millisecond)
	release := make(chan struct{})
	started := make(chan struct{}, burst)
	for range burst {
		p.Go(task{fn: func() { started <- struct{}{}; <-release }})
	}
	for range burst {
		<-started
	}
	close(release)
	if n := p.live.Load(); n != burst {
		t.Fatalf("%d workers for a burst of %d blocking tasks", n, burst)
	}
	// One task every millisecond: each worker in turn would be used every
	// 10 ms, well inside the 50 ms idle time, and none would retire.
	done := make(chan struct{})
	deadline := time.Now().Add(10 * time.Second)
	for p.live.Load() > 2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still alive under a load that needs one", p.live.Load())
		}
		p.Go(task{fn: func() { done <- struct{}{} }})
		<-done
		time.Sleep(time.Millisecond)
	}
}

// Every task runs exactly once while workers retire and are handed tasks
// at the same moment (an idle time of a few microseconds makes each timer
// race Go's hand-off).
func TestPoolRunsEveryTaskOnceWhileWorkersRetire(t *testing.T) {
	p := newPool(5 * time.Microsecond)
	const senders, each = 8, 2000
	var ran [senders * each]atomic.Int32
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				n := s*each + i
				wg.Add(1)
				p.Go(task{fn: func() { ran[n].Add(1); wg.Done() }})
				if i%64 == 0 {
					time.Sleep(20 * time.Microsecond) // let workers go idle and retire
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("tasks still not run after 30 s: one was lost")
	}
	for n := range ran {
		if c := ran[n].Load(); c != 1 {
			t.Fatalf("task %d ran %d times", n, c)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.live.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers still alive with nothing to do", p.live.Load())
		}
		time.Sleep(time.Millisecond)
	}
}
