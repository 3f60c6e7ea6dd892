package mesh

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// heldReq is a request waiting for a component of its target to join.
type heldReq struct {
	env    *Envelope
	finish func()
	until  time.Time
}

// hold keeps a request until a component of its target joins.
func (m *Mesh) hold(env *Envelope, finish func()) {
	var until time.Time // zero: wait for ever (-missing_component_timeout 0)
	if env.Deadline != 0 {
		until = time.UnixMilli(env.Deadline)
	} else if m.opts.MissingComponentTimeout > 0 {
		until = time.Now().Add(m.opts.MissingComponentTimeout)
	}
	m.mu.Lock()
	m.held = append(m.held, &heldReq{env: env, finish: finish, until: until})
	m.mu.Unlock()
	select {
	case m.heldC <- struct{}{}:
	default:
	}
	m.opts.Metrics.Held(env.ActorType != "", env.TargetName(), 1)
	m.log.Info("holding a request until a component joins", "id", env.ID, "target", env.Target())
}

// retryHeld forwards held requests whose target has now joined.
func (m *Mesh) retryHeld(ctx context.Context) {
	m.mu.Lock()
	held := m.held
	m.held = nil
	m.mu.Unlock()
	var keep []*heldReq
	for _, h := range held {
		if m.serves(h.env) {
			m.opts.Metrics.Held(h.env.ActorType != "", h.env.TargetName(), -1)
			m.beginServe()
			if h.env.ActorType != "" {
				go m.serveActor(h.env, h.finish)
			} else {
				go m.serve(h.env, h.finish)
			}
		} else if t := m.routeTo(ctx, h.env, m.id); t != nil {
			m.opts.Metrics.Held(h.env.ActorType != "", h.env.TargetName(), -1)
			m.forward(h.env, t, h.finish)
		} else {
			keep = append(keep, h)
		}
	}
	if len(keep) > 0 {
		m.mu.Lock()
		m.held = append(m.held, keep...)
		m.mu.Unlock()
	}
}

// heldLoop answers held requests whose wait for a component ran out,
// looking every 100 ms while it holds any (and sleeping otherwise: an idle
// sidecar is not woken ten times a second).
func (m *Mesh) heldLoop(ctx context.Context) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		m.mu.Lock()
		holding := len(m.held) > 0
		m.mu.Unlock()
		wait := t.C
		if !holding {
			wait = nil
		}
		select {
		case <-ctx.Done():
			return
		case <-m.heldC:
			continue
		case <-wait:
		}
		m.expireHeld(ctx)
	}
}

func (m *Mesh) expireHeld(ctx context.Context) {
	now := time.Now()
	var expired []*heldReq
	m.mu.Lock()
	keep := m.held[:0]
	for _, h := range m.held {
		if !h.until.IsZero() && now.After(h.until) {
			expired = append(expired, h)
		} else {
			keep = append(keep, h)
		}
	}
	m.held = keep
	m.mu.Unlock()
	for _, h := range expired {
		m.opts.Metrics.HeldExpired(h.env.ActorType != "", h.env.TargetName())
		msg := fmt.Sprintf("no component for %s joined the application %s in time (-missing_component_timeout %s)", h.env.Target(), m.opts.App, m.opts.MissingComponentTimeout)
		m.log.Error(msg, "id", h.env.ID)
		if !h.env.Async {
			resp := &Envelope{Kind: KindResponse, ID: h.env.ID, To: h.env.From, Status: http.StatusRequestTimeout, Error: true, Body: []byte(msg)}
			if !m.produceRetry(resp, m.partitionOf(h.env.From, h.env.FromPart)) {
				continue
			}
		}
		m.callDone(h.env)
		h.finish()
	}
}
