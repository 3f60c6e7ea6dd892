package mesh

import (
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
