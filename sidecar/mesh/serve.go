package mesh

import (
	"context"
)

func (m *Mesh) serve(env *Envelope, finish func()) {
	defer m.work.Done()
	var resp *Envelope
	for attempt := 0; ; attempt++ {
		// No per-request cancellation: registering every delivery with a
		// cancellable parent was a tenth of a busy sidecar's CPU; Leave
		// bounds its wait for deliveries itself.
		r, err := m.opts.Handler(context.Background(), env)
		if err == nil {
			resp = r
			break
		}
		if m.isLeaving() || m.isWithdrawn() {
			m.handOver(env, finish, err)
			return
		}
		if attempt%20 == 0 {
			m.log.Warn("component unreachable, retrying", "id", env.ID, "err", err)
		}
		if !m.pause(backoff(attempt)) {
			m.handOver(env, finish, err)
			return
		}
	}
	if next := continuation(env, resp, 0); next != nil {
		if err := m.recordStep(env.ID, next); err == nil {
			m.sendContinuation(next)
			finish()
			return
		}
		resp = &Envelope{Status: 500, Error: true, Body: []byte("cannot record tail call")}
	}
	m.answer(env, resp, finish)
}

// handOver passes a request this sidecar's component can no longer serve
// (it is stopping or gone) to another live sidecar that serves it. With
// none, the request stays unfinished: the partition's next owner
// delivers it.
func (m *Mesh) handOver(env *Envelope, finish func(), cause error) {
	if env.ActorType != "" {
		m.dropInstance(context.Background(), m.instance(env.ActorType, env.ActorID))
	}
	if t := m.routeTo(context.Background(), env, m.id); t != nil {
		m.log.Info("handing a request over to another sidecar", "id", env.ID, "to", t.ID, "err", cause)
		m.forward(env, t, finish)
		return
	}
	m.log.Info("leaving a request to the partition's next owner", "id", env.ID, "err", cause)
}
