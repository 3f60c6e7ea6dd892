package autoscale_test

import (
	"context"
	"testing"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/autoscale/autoscaletest"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestWakeOnHeld: a real sidecar that holds a first request for a
// service with no replica publishes its load and wakes the application's
// wake channel at once (not at its next load period), and the load read
// on waking shows the request held. A second request for the same
// service, already held for, wakes nothing: the channel carries only the
// first of a burst.
func TestWakeOnHeld(t *testing.T) {
	b := testenv.Backend(t)
	const app = "wakeheld"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	src := autoscaletest.Source(t, b)
	caller := autoscaletest.Sidecar(t, b, "caller", "-app", app, "-missing_component_timeout", "0")
	wake, err := src.Wake(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	autoscaletest.Tell(t, caller, "worker")
	select {
	case <-wake:
	case <-time.After(30 * time.Second):
		t.Fatal("no wake within 30 s of a held request")
	}
	took := time.Since(begin)
	in, err := src.Read(ctx, autoscale.Target{App: app, Type: "service", Name: "worker"})
	if err != nil || in.Held != 1 {
		t.Fatalf("load read on waking: %+v, %v; want 1 held", in, err)
	}
	t.Logf("held request to wake: %v", took)
}
