package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestIdleKafkaRequests: an idle mesh costs the broker a few requests per
// sidecar and second, whatever the number of partitions nobody owns. Each
// sidecar looks for orphaned partitions every second; it asked for the
// ends (and starts) of the free partitions one request each, 24 requests a
// second per sidecar with 4 sidecars on the topic's 16 partitions, and
// about 8 a second per sidecar in a mesh of 200 (the topic grows by 16).
func TestIdleKafkaRequests(t *testing.T) {
	kar := testenv.KarBin(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	e, err := NewEnv(ctx, kar, self, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	const sidecars = 4
	var procs []*Proc
	for i := 0; i < sidecars; i++ {
		p, err := e.StartSidecar(nil, false)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, p)
	}
	for _, p := range procs {
		if err := e.WaitHealthy(ctx, p, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	// Every sidecar has scanned at least once since the last one joined.
	time.Sleep(2 * time.Second)
	s0, err := e.Snap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second)
	s1, err := e.Snap(ctx)
	if err != nil {
		t.Fatal(err)
	}
	d := s1.Sub(s0)
	per := func(n int64) float64 { return float64(n) / d.Seconds / sidecars }
	t.Logf("idle, per sidecar and second: Kafka %s; Redis %s", Per(d.KafkaReqs, d.Seconds*sidecars), Per(d.RedisCmds, d.Seconds*sidecars))
	if lo := per(d.KafkaReqs["ListOffsets"]); lo > 4 {
		t.Errorf("%.1f ListOffsets requests per idle sidecar and second, want at most 4 (two per scan for orphaned partitions)", lo)
	}
	if f := per(d.KafkaReqs["Fetch"]); f < 1 || f > 4 {
		t.Errorf("%.1f fetches per idle sidecar and second, want about 2 (one long poll each 500 ms)", f)
	}
}
