package externalscaler_test

import (
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/autoscale/autoscaletest"
	"github.com/kar-runtime/kar/autoscale/externalscaler"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startScaler runs kar-scaler's Main on a free port against b, reading
// the load every poll, and returns a gRPC client to it, as KEDA would
// call it.
func startScaler(t *testing.T, b *devenv.Backend, poll string) *externalscaler.Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	done := make(chan int, 1)
	args := []string{"-port", "0", "-poll", poll, "-config_dir", t.TempDir(), "-kafka_brokers", b.KafkaBrokers(),
		"-redis_host", b.RedisHost(), "-redis_port", strconv.Itoa(b.RedisPort())}
	go func() { done <- externalscaler.Main(ctx, args, io.Discard, func(a string) { addr <- a }) }()
	var a string
	select {
	case a = <-addr:
	case code := <-done:
		t.Fatalf("kar-scaler exited with %d before serving", code)
	case <-time.After(30 * time.Second):
		t.Fatal("kar-scaler did not serve within 30 s")
	}
	_, port, _ := net.SplitHostPort(a)
	cc, err := grpc.NewClient("127.0.0.1:"+port, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("kar-scaler exited with %d", code)
		}
	})
	return externalscaler.NewClient(cc)
}

// TestScalerFollowsTheMesh: KEDA's calls, over gRPC, against real
// sidecars: no load → inactive, metric 0; requests held for a service
// with no member → active (also on the stream), metric = the requests
// held; a replica joins and answers them → inactive again.
func TestScalerFollowsTheMesh(t *testing.T) {
	b := testenv.Backend(t)
	const app = "scaler"
	client := startScaler(t, b, "100ms")
	caller := autoscaletest.Sidecar(t, b, "caller", "-app", app, "-missing_component_timeout", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ref := &externalscaler.ScaledObjectRef{Name: "worker", Namespace: "default",
		ScalerMetadata: map[string]string{"app": app, "service": "worker", "targetInFlight": "2"}}

	metric := func() int64 {
		t.Helper()
		r, err := client.GetMetrics(ctx, &externalscaler.GetMetricsRequest{ScaledObjectRef: ref, MetricName: "s0-kar"})
		if err != nil {
			t.Fatalf("GetMetrics: %v", err)
		}
		if len(r.MetricValues) != 1 || r.MetricValues[0].MetricName != "s0-kar" {
			t.Fatalf("GetMetrics: %v", r)
		}
		return r.MetricValues[0].MetricValue
	}
	active := func() bool {
		t.Helper()
		r, err := client.IsActive(ctx, ref)
		if err != nil {
			t.Fatalf("IsActive: %v", err)
		}
		return r.Result
	}

	spec, err := client.GetMetricSpec(ctx, ref)
	if err != nil || len(spec.MetricSpecs) != 1 || spec.MetricSpecs[0].TargetSize != 2 || spec.MetricSpecs[0].TargetSizeFloat != 2 ||
		spec.MetricSpecs[0].MetricName != "kar-service-worker-in-flight" {
		t.Fatalf("GetMetricSpec: %v, %v", spec, err)
	}
	if active() || metric() != 0 {
		t.Fatalf("no load: active %v, metric %d; want false, 0", active(), metric())
	}
	stream, err := client.StreamIsActive(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.Result {
		t.Fatalf("stream, first: %v, %v; want false", r, err)
	}

	const held = 3
	for range held {
		autoscaletest.Tell(t, caller, "worker")
	}
	if r, err := stream.Recv(); err != nil || !r.Result {
		t.Fatalf("stream after %d held requests: %v, %v; want true", held, r, err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return active() && metric() == held },
		"active with metric %d (last %d)", held, metric())

	// A replica joins and answers: nothing held, nothing in flight.
	autoscaletest.Sidecar(t, b, "worker", "-app", app, "-service", "worker", "-app_port", strconv.Itoa(autoscaletest.Component(t)))
	if r, err := stream.Recv(); err != nil || r.Result {
		t.Fatalf("stream once answered: %v, %v; want false", r, err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return !active() && metric() == 0 },
		"inactive, metric 0 once answered (last %d)", metric())
}

// TestScalerBadMetadata: a ScaledObject that names no target, or two, or a
// bad target per replica, is InvalidArgument with the reason.
func TestScalerBadMetadata(t *testing.T) {
	b := testenv.Backend(t)
	client := startScaler(t, b, "100ms")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cases := []struct {
		md   map[string]string
		want string
	}{
		{map[string]string{"service": "s"}, "no app"},
		{map[string]string{"app": "a"}, "want service or actorType"},
		{map[string]string{"app": "a", "service": "s", "actorType": "T"}, "name one"},
		{map[string]string{"app": "a", "actorType": "T", "targetInFlight": "0"}, "targetInFlight"},
		{map[string]string{"app": "a", "actorType": "T", "targetInFlight": "x"}, "targetInFlight"},
	}
	for _, c := range cases {
		ref := &externalscaler.ScaledObjectRef{Name: "n", ScalerMetadata: c.md}
		_, err := client.IsActive(ctx, ref)
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), c.want) {
			t.Errorf("IsActive(%v): %v; want InvalidArgument saying %q", c.md, err, c.want)
		}
		_, err = client.GetMetricSpec(ctx, ref)
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("GetMetricSpec(%v): %v; want InvalidArgument", c.md, err)
		}
	}
}

// TestStreamWakesAtOnce: with a poll of an hour, StreamIsActive still
// says active as soon as a sidecar holds a first request for the target:
// the sidecar's wake, not a poll, sends it (KEDA's external-push trigger
// then activates the target at once).
func TestStreamWakesAtOnce(t *testing.T) {
	b := testenv.Backend(t)
	const app = "scalerwake"
	client := startScaler(t, b, "1h")
	caller := autoscaletest.Sidecar(t, b, "caller", "-app", app, "-missing_component_timeout", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ref := &externalscaler.ScaledObjectRef{Name: "worker", Namespace: "default",
		ScalerMetadata: map[string]string{"app": app, "service": "worker"}}
	stream, err := client.StreamIsActive(ctx, ref)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := stream.Recv(); err != nil || r.Result {
		t.Fatalf("stream, first: %v, %v; want false", r, err)
	}
	begin := time.Now()
	autoscaletest.Tell(t, caller, "worker")
	if r, err := stream.Recv(); err != nil || !r.Result {
		t.Fatalf("stream after a held request: %v, %v; want true", r, err)
	}
	t.Logf("held request to active on the stream: %v", time.Since(begin))
}
