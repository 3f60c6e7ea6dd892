package mesh

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

func (m *Mesh) serve(env *Envelope, finish func()) {
	defer m.endServe()
	// No per-request cancellation: registering every delivery with a
	// cancellable parent was a tenth of a busy sidecar's CPU; Leave
	// bounds its wait for deliveries itself.
	// A service request has no session: its own id stands for one, so a
	// call its run makes may be traced to it (orchestrate.go).
	m.enterService(env.ID)
	resp, err := m.deliver(context.Background(), env)
	m.leaveService(env.ID)
	if err != nil {
		m.handOver(env, finish, err)
		return
	}
	if next := continuation(env, resp, 0); next != nil {
		if err := m.recordStep(env.ID, next); err == nil {
			m.sendContinuation(next)
			finish()
			return
		}
		resp = &Envelope{Status: 500, Error: true, Body: []byte("cannot record tail call")}
	}
	m.answer(env, actorResult(env, resp), finish)
}

// handOver passes a request this sidecar's component can no longer serve
// (it is stopping or gone) to another live sidecar that serves it. With
// none, the request stays unfinished: the partition's next owner
// delivers it.
func (m *Mesh) handOver(env *Envelope, finish func(), cause error) {
	if env.ActorType != "" {
		in := m.instance(env.ActorType, env.ActorID)
		m.dropInstance(context.Background(), in)
		m.unref(in)
	}
	if t := m.routeTo(context.Background(), env, m.id); t != nil {
		m.log.Info("handing a request over to another sidecar", "id", env.ID, "to", t.ID, "err", cause)
		m.forward(env, t, finish)
		return
	}
	m.log.Info("leaving a request to the partition's next owner", "id", env.ID, "err", cause)
}

// deliver hands env to the component. While the component refuses
// connections (it is starting or restarting) the delivery is retried for
// as long as this sidecar serves; a component that takes the request and
// fails without an answer (a crash in its handler: a poison request) gets
// it at most DeliveryAttempts times, with a growing pause, and then the
// request fails with a 500 saying so. The error is for a delivery this
// sidecar gave up because it is stopping.
func (m *Mesh) deliver(ctx context.Context, env *Envelope) (*Envelope, error) {
	failures := 0
	for attempt := 0; ; attempt++ {
		r, err := m.opts.Handler(ctx, env)
		if err == nil {
			return r, nil
		}
		if m.isLeaving() || m.isWithdrawn() || ctx.Err() != nil {
			return nil, err
		}
		pause := backoff(attempt)
		if errors.Is(err, syscall.ECONNREFUSED) {
			if attempt%20 == 0 {
				m.log.Warn("component not listening, retrying", "id", env.ID, "err", err)
			}
		} else {
			failures++
			if failures >= m.opts.DeliveryAttempts {
				m.poisoned.Add(1)
				msg := fmt.Sprintf("the component failed %d times without answering this request to %s %s (last error: %v); kar gave up (-delivery_attempts %d)", failures, env.Target(), env.Path, err, m.opts.DeliveryAttempts)
				m.log.Warn("giving up on a request that its component failed without answering", "id", env.ID, "target", env.Target(), "path", env.Path, "attempts", failures, "err", err)
				return &Envelope{Status: 500, Error: true, Header: textPlain(), Body: []byte(msg)}, nil
			}
			m.log.Warn("component failed without answering, delivering again", "id", env.ID, "target", env.Target(), "attempt", failures, "err", err)
			pause = failureBackoff(failures)
		}
		if !m.pause(pause) {
			return nil, err
		}
	}
}

// failureBackoff is the pause after the nth failed delivery: 100 ms,
// doubling up to 5 s.
func failureBackoff(n int) time.Duration {
	return min(100*time.Millisecond<<min(n-1, 6), 5*time.Second)
}

func textPlain() httpx.Fields {
	return httpx.Fields{"Content-Type", "text/plain; charset=utf-8"}
}

// redeliveredTooOften counts the runs of a request that may have run
// before (redelivered after its host died, or passed on) in Redis, and
// fails it with a 500 once it has been started DeliveryAttempts times: a
// request that kills its component's process (and with it the sidecar)
// would otherwise take every replica down in turn, for ever.
func (m *Mesh) redeliveredTooOften(env *Envelope, finish func()) bool {
	ctx := context.Background()
	key := m.keys.Attempts(rootID(env.ID))
	pipe := m.rdb.Pipeline()
	n := pipe.Incr(ctx, key)
	pipe.Expire(ctx, key, callsTTL)
	if _, err := pipe.Exec(ctx); err != nil || n.Val() <= int64(m.opts.DeliveryAttempts) {
		return false
	}
	m.poisoned.Add(1)
	msg := fmt.Sprintf("the request to %s %s was started %d times, each time by a host that died before answering; kar gave up (-delivery_attempts %d)", env.Target(), env.Path, n.Val(), m.opts.DeliveryAttempts)
	m.log.Warn("giving up on a request whose hosts died running it", "id", env.ID, "target", env.Target(), "path", env.Path, "runs", n.Val())
	m.answer(env, &Envelope{Status: 500, Error: true, Header: textPlain(), Body: []byte(msg)}, finish)
	return true
}
