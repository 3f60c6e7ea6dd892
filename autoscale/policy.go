// Package autoscale turns the mesh's own load (sidecar.ReadLoad: what
// `kar get -s load` shows) into a number of replicas for one service or
// actor type. It is the one place that policy lives: kar-scaler (KEDA's
// external scaler), `kar ce autoscale` (Code Engine) and local scaling all
// compute their figures here.
package autoscale

import (
	"errors"
	"fmt"
	"time"
)

// Defaults fit a mesh that joins in tens of milliseconds: poll every
// second, hold a scale-down for 30 s, keep the last replica 60 s after
// the last work (KEDA's 300 s is for slow starters).
const (
	DefaultPoll            = time.Second
	DefaultScaleDownWindow = 30 * time.Second
	DefaultCooldown        = 60 * time.Second
	DefaultTargetInFlight  = 10
)

// Input is the load of one target (a service or an actor type) at one
// moment.
type Input struct {
	// Members: live replicas announcing the target.
	Members int
	// InFlight: requests its components run now; Held: requests waiting
	// in some sidecar for a replica of it to join.
	InFlight, Held int64
	// Orphaned: records unread on partitions no live sidecar owns. They
	// name no target until read, so they wake a target with no replica.
	Orphaned int64
}

// Load is the metric the policy divides by the target per replica: the
// work running and the work waiting for the target. Orphaned records
// count only while the target has no replica: they may be its requests,
// and nothing reads them until some sidecar joins.
func (in Input) Load() int64 {
	l := in.InFlight + in.Held
	if in.Members == 0 {
		l += in.Orphaned
	}
	return l
}

// Policy is the knobs of a target's scaling.
type Policy struct {
	// TargetInFlight: requests in flight (or held) per replica.
	TargetInFlight int64
	Min, Max       int
	// ScaleDownWindow: a scale-down takes the highest replica count
	// asked for over this window, so a dip in load does not stop
	// replicas that the next second needs again.
	ScaleDownWindow time.Duration
	// Cooldown: the last replica stays this long after the last work.
	Cooldown time.Duration
}

// DefaultPolicy is a policy with the default windows.
func DefaultPolicy(min, max int, target int64) Policy {
	return Policy{TargetInFlight: target, Min: min, Max: max, ScaleDownWindow: DefaultScaleDownWindow, Cooldown: DefaultCooldown}
}

// Validate says what is wrong with p, if anything.
func (p Policy) Validate() error {
	var errs []error
	if p.TargetInFlight < 1 {
		errs = append(errs, fmt.Errorf("target in flight per replica %d: want at least 1", p.TargetInFlight))
	}
	if p.Min < 0 {
		errs = append(errs, fmt.Errorf("min %d: want 0 or more", p.Min))
	}
	if p.Max < 1 || p.Max < p.Min {
		errs = append(errs, fmt.Errorf("max %d: want at least 1 and at least min (%d)", p.Max, p.Min))
	}
	if p.ScaleDownWindow < 0 || p.Cooldown < 0 {
		errs = append(errs, errors.New("scale-down window and cooldown: want 0 or more"))
	}
	return errors.Join(errs...)
}

// Want is the replicas the load asks for now, between Min and Max,
// before any window: ceil(load / target), and at least one while any
// work waits for the target (a target scaled to zero with held requests
// must come back).
func (p Policy) Want(in Input) int {
	n := 0
	if l := in.Load(); l > 0 {
		n = int((l + p.TargetInFlight - 1) / p.TargetInFlight)
	}
	return min(max(n, p.Min), p.Max)
}

// Scaler applies a Policy over time: scale-up at once, scale-down to the
// highest count wanted over the window, and to zero only after the
// cooldown. It is not safe for concurrent use.
type Scaler struct {
	p        Policy
	wanted   []sample
	lastBusy time.Time
}

type sample struct {
	at time.Time
	n  int
}

// NewScaler returns a Scaler for p (validated).
func NewScaler(p Policy) (*Scaler, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Scaler{p: p}, nil
}

// Policy is the scaler's policy.
func (s *Scaler) Policy() Policy { return s.p }

// Next is the replicas the target should have at now, given its load.
func (s *Scaler) Next(now time.Time, in Input) int {
	want := s.p.Want(in)
	if in.Load() > 0 {
		s.lastBusy = now
	}
	// Keep the wants of the window only.
	cut := 0
	for cut < len(s.wanted) && now.Sub(s.wanted[cut].at) > s.p.ScaleDownWindow {
		cut++
	}
	s.wanted = append(s.wanted[cut:], sample{now, want})
	n := 0
	for _, w := range s.wanted {
		n = max(n, w.n)
	}
	if n == 0 && !s.lastBusy.IsZero() && now.Sub(s.lastBusy) < s.p.Cooldown {
		n = 1
	}
	return min(max(n, s.p.Min), s.p.Max)
}
