package mesh

import (
	"context"
	"time"
)

// A graceful stop withdraws the sidecar, drains it, and only then stops
// its component: stopping a component that is running requests would have
// them handed over and run a second time elsewhere.

// Withdraw stops new work from being routed here (the services and actor
// types are no longer announced) while the sidecar keeps running: the
// first step of a graceful stop, taken before the component is signalled.
func (m *Mesh) Withdraw(ctx context.Context) error {
	m.mu.Lock()
	m.withdrawn = true
	m.self.Services, m.self.Actors = nil, nil
	m.mu.Unlock()
	return m.register(ctx, "update")
}

// Drain, after Withdraw, waits until the component runs no request for the
// mesh and hosts no actor instance. Each instance active here is retired
// when its turn comes: the calls queued for it before run here, later ones
// go to its next host (its placement is given up with it). ctx bounds the
// wait; the error is ctx's when it ends first.
func (m *Mesh) Drain(ctx context.Context) error {
	retiring := map[*instance]bool{}
	retired := make(chan *instance)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		m.mu.Lock()
		var todo []*instance
		for _, in := range m.instances {
			if !retiring[in] {
				retiring[in] = true
				todo = append(todo, in)
			}
		}
		left := len(m.instances)
		m.mu.Unlock()
		for _, in := range todo {
			go func() {
				m.retire(ctx, in, "kar-drain")
				select {
				case retired <- in:
				case <-ctx.Done():
				}
			}()
		}
		if left == 0 && m.serving.Load() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case in := <-retired:
			// An instance the drain took may be taken again by a call
			// that was waiting for it: look at it again.
			delete(retiring, in)
		case <-tick.C:
		}
	}
}
