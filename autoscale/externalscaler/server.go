package externalscaler

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reader reads a target's load now (autoscale.Source in kar-scaler).
type Reader = autoscale.Reader

// Server is kar-scaler: KEDA's external scaler over the mesh's load. A
// ScaledObject's metadata names the target (app, and service or
// actorType) and the requests in flight each replica should carry
// (targetInFlight, default autoscale.DefaultTargetInFlight). KEDA
// activates the target (0 → 1) while IsActive says so, and its HPA sets
// ceil(metric / targetInFlight) replicas: the same figure as
// autoscale.Policy.Want. KEDA applies the windows itself (cooldownPeriod,
// the HPA's scale-down stabilisation), which `kar k8s scaledobject` sets.
type Server struct {
	src  Reader
	poll time.Duration
	log  *slog.Logger
}

// NewServer serves the load src reads; StreamIsActive polls every poll.
func NewServer(src Reader, poll time.Duration, log *slog.Logger) *Server {
	if poll <= 0 {
		poll = autoscale.DefaultPoll
	}
	return &Server{src: src, poll: poll, log: log}
}

// The metadata keys of a ScaledObject's trigger.
const (
	MetaApp            = autoscale.MetaApp
	MetaService        = autoscale.MetaService
	MetaActorType      = autoscale.MetaActorType
	MetaTargetInFlight = autoscale.MetaTargetInFlight
)

// parseRef reads the target and its per-replica target from ref.
func parseRef(ref *ScaledObjectRef) (autoscale.Target, int64, error) {
	if ref == nil {
		return autoscale.Target{}, 0, status.Error(codes.InvalidArgument, "no scaled object")
	}
	md := ref.GetScalerMetadata()
	t := autoscale.Target{App: md[MetaApp]}
	switch s, a := md[MetaService], md[MetaActorType]; {
	case s != "" && a != "":
		return t, 0, status.Errorf(codes.InvalidArgument, "metadata: both %s and %s: name one", MetaService, MetaActorType)
	case s != "":
		t.Type, t.Name = "service", s
	case a != "":
		t.Type, t.Name = "actor", a
	default:
		return t, 0, status.Errorf(codes.InvalidArgument, "metadata: want %s or %s", MetaService, MetaActorType)
	}
	if err := t.Validate(); err != nil {
		return t, 0, status.Errorf(codes.InvalidArgument, "metadata: %v", err)
	}
	target := int64(autoscale.DefaultTargetInFlight)
	if v := md[MetaTargetInFlight]; v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return t, 0, status.Errorf(codes.InvalidArgument, "metadata: %s %q: want a whole number of at least 1", MetaTargetInFlight, v)
		}
		target = n
	}
	return t, target, nil
}

// MetricName is the metric of t: KEDA's metric names are per
// ScaledObject, so this only has to say what it measures.
func MetricName(t autoscale.Target) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, t.Name)
	return fmt.Sprintf("kar-%s-%s-in-flight", t.Type, name)
}

func (s *Server) read(ctx context.Context, ref *ScaledObjectRef) (autoscale.Target, int64, autoscale.Input, error) {
	t, target, err := parseRef(ref)
	if err != nil {
		return t, 0, autoscale.Input{}, err
	}
	in, err := s.src.Read(ctx, t)
	if err != nil {
		s.log.Warn("kar-scaler: cannot read the load", "target", t.String(), "err", err)
		return t, 0, in, status.Errorf(codes.Unavailable, "%v", err)
	}
	return t, target, in, nil
}

// IsActive: work runs or waits for the target.
func (s *Server) IsActive(ctx context.Context, ref *ScaledObjectRef) (*IsActiveResponse, error) {
	_, _, in, err := s.read(ctx, ref)
	if err != nil {
		return nil, err
	}
	return &IsActiveResponse{Result: in.Load() > 0}, nil
}

// StreamIsActive sends the activity at once and then each change, read
// every s.poll and at once when a sidecar announces a first held request
// (autoscale.Waker): KEDA (trigger type external-push) activates a target
// scaled to zero within milliseconds of its first request, not at its
// own polling interval.
func (s *Server) StreamIsActive(ref *ScaledObjectRef, stream grpc.ServerStreamingServer[IsActiveResponse]) error {
	ctx := stream.Context()
	if _, _, err := parseRef(ref); err != nil {
		return err
	}
	t, _, _ := parseRef(ref)
	tick := time.NewTicker(s.poll)
	defer tick.Stop()
	wake := autoscale.WakeOf(ctx, s.src, t.App, s.log)
	sent, last := false, false
	for {
		if _, _, in, err := s.read(ctx, ref); err == nil {
			if active := in.Load() > 0; !sent || active != last {
				if err := stream.Send(&IsActiveResponse{Result: active}); err != nil {
					return err
				}
				sent, last = true, active
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-wake:
		}
	}
}

// GetMetricSpec: one metric, the load per replica wanted.
func (s *Server) GetMetricSpec(ctx context.Context, ref *ScaledObjectRef) (*GetMetricSpecResponse, error) {
	t, target, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	return &GetMetricSpecResponse{MetricSpecs: []*MetricSpec{{
		MetricName: MetricName(t), TargetSize: target, TargetSizeFloat: float64(target),
	}}}, nil
}

// GetMetrics: the target's load (autoscale.Input.Load).
func (s *Server) GetMetrics(ctx context.Context, req *GetMetricsRequest) (*GetMetricsResponse, error) {
	t, _, in, err := s.read(ctx, req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	name := req.GetMetricName()
	if name == "" {
		name = MetricName(t)
	}
	l := in.Load()
	return &GetMetricsResponse{MetricValues: []*MetricValue{{MetricName: name, MetricValue: l, MetricValueFloat: float64(l)}}}, nil
}
