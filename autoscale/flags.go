package autoscale

import (
	"errors"
	"flag"
	"fmt"
	"time"
)

// The metadata keys of a KEDA ScaledObject's external trigger on
// kar-scaler: kept here, without gRPC, for `kar k8s scaledobject`.
const (
	MetaApp            = "app"
	MetaService        = "service"
	MetaActorType      = "actorType"
	MetaTargetInFlight = "targetInFlight"
)

// Flags are the flags of every autoscaling target (`kar k8s scaledobject`,
// `kar ce autoscale`, local scaling): the same names and defaults on each.
type Flags struct {
	App, Service, Actors string
	Policy
	Poll time.Duration
}

// Register adds the flags to fs.
func (f *Flags) Register(fs *flag.FlagSet) {
	fs.StringVar(&f.App, "app", "", "the application (required)")
	fs.StringVar(&f.Service, "service", "", "scale on the load of this service")
	fs.StringVar(&f.Actors, "actors", "", "scale on the load of this actor type")
	fs.IntVar(&f.Min, "min", 0, "fewest replicas (0: scale to zero)")
	fs.IntVar(&f.Max, "max", 10, "most replicas")
	RegisterKnobs(fs, &f.TargetInFlight, &f.Poll, &f.ScaleDownWindow, &f.Cooldown)
}

// RegisterKnobs adds the policy's knobs to fs: -target, -poll,
// -scale_down_window, -cooldown, with the defaults; for commands whose
// bounds and target come from flags of their own (kar knative service).
func RegisterKnobs(fs *flag.FlagSet, target *int64, poll, window, cooldown *time.Duration) {
	fs.Int64Var(target, "target", DefaultTargetInFlight, "requests in flight (or held) per replica")
	fs.DurationVar(poll, "poll", DefaultPoll, "how often the load is read")
	fs.DurationVar(window, "scale_down_window", DefaultScaleDownWindow, "a scale-down keeps the most replicas wanted over this window")
	fs.DurationVar(cooldown, "cooldown", DefaultCooldown, "the last replica stays this long after the last work, before zero")
}

// Target is the target the flags name: exactly one of -service, -actors.
func (f *Flags) Target() (Target, error) {
	t := Target{App: f.App}
	switch {
	case f.Service != "" && f.Actors != "":
		return t, errors.New("-service and -actors: name one")
	case f.Service != "":
		t.Type, t.Name = "service", f.Service
	case f.Actors != "":
		t.Type, t.Name = "actor", f.Actors
	default:
		return t, errors.New("name what to scale on: -service S or -actors T")
	}
	if f.App == "" {
		return t, errors.New("-app is required")
	}
	return t, t.Validate()
}

// Validate checks the flags and says how to fix them.
func (f *Flags) Validate() (Target, error) {
	t, err := f.Target()
	if err != nil {
		return t, err
	}
	if err := f.Policy.Validate(); err != nil {
		return t, err
	}
	if f.Poll < 100*time.Millisecond {
		return t, fmt.Errorf("-poll %v: want at least 100ms", f.Poll)
	}
	return t, nil
}
