package autoscale

import (
	"context"
	"log/slog"
	"time"
)

// Reader reads a target's load now (Source, or a test's script).
type Reader interface {
	Read(ctx context.Context, t Target) (Input, error)
}

// Waker is a Reader that also says at once when a target's load may have
// risen from nothing (Source: a sidecar holds a first request for a
// target with no replica), so that a loop reads then rather than at its
// next poll: the poll stays cheap and scale from zero stays fast.
type Waker interface {
	Wake(ctx context.Context, app string) (<-chan struct{}, error)
}

// WakeOf is r's wake channel for app: nil (never ready) when r cannot
// wake, or when subscribing failed (logged: polling still works).
func WakeOf(ctx context.Context, r Reader, app string, log *slog.Logger) <-chan struct{} {
	w, ok := r.(Waker)
	if !ok {
		return nil
	}
	ch, err := w.Wake(ctx, app)
	if err != nil {
		log.Warn("autoscale: no wake channel, polling only", "app", app, "err", err)
		return nil
	}
	return ch
}

// SetFunc makes the target run n replicas; in is the load that asked for
// them, for the log.
type SetFunc func(ctx context.Context, n int, in Input) error

// Loop runs s over t's load every poll, and at once when r wakes it
// (Waker), until ctx ends, and calls set
// whenever the replicas wanted differ from the last ones set (and on the
// first poll, from current: what the target runs now). A failed read or
// set is logged and tried again on the next poll: a platform or backend
// that is away for a while must not stop the scaling for good.
func Loop(ctx context.Context, r Reader, t Target, s *Scaler, poll time.Duration, current int, set SetFunc, log *slog.Logger) error {
	tick := time.NewTicker(poll)
	defer tick.Stop()
	wake := WakeOf(ctx, r, t.App, log)
	last := current
	for {
		in, err := r.Read(ctx, t)
		if err != nil {
			log.Warn("autoscale: cannot read the load", "target", t.String(), "err", err)
		} else if n := s.Next(time.Now(), in); n != last {
			if err := set(ctx, n, in); err != nil {
				log.Warn("autoscale: cannot scale", "target", t.String(), "from", last, "to", n, "err", err)
			} else {
				log.Info("autoscale: scaled", "target", t.String(), "from", last, "to", n,
					"members", in.Members, "inFlight", in.InFlight, "held", in.Held, "orphaned", in.Orphaned)
				last = n
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		case <-wake:
		}
	}
}
