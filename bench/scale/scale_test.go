package main

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestMain lets the test binary serve as the benchmark's component, as
// the benchmark's own binary does.
func TestMain(m *testing.M) {
	if os.Getenv(componentEnv) == "1" {
		if err := serveComponent(); err != nil {
			os.Exit(1)
		}
		return
	}
	os.Exit(m.Run())
}

// TestSmoke runs the benchmark at its smallest (3 sidecars, 100 actors,
// a few calls of each kind) so that it keeps working, and checks that its
// figures are there and sane.
func TestSmoke(t *testing.T) {
	kar := testenv.KarBin(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	e, err := NewEnv(ctx, kar, self, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	var out bytes.Buffer
	t.Cleanup(func() { t.Logf("figures:\n%s", out.String()) })

	start := time.Now()
	t.Cleanup(func() { t.Logf("took %s", time.Since(start)) })
	ops, err := Ops(ctx, e, 20, 4, time.Second)
	if err != nil {
		t.Fatalf("ops: %v", err)
	}
	if len(ops) != 6 {
		t.Fatalf("ops: %d figures, want 6", len(ops))
	}
	for _, p := range ops {
		p.Print(&out)
		// Every call is a request and a response produced to Kafka; one
		// at a time, none share a produce request.
		produce := float64(p.Ops.KafkaReqs["Produce"]) / float64(p.Calls)
		if p.InFlight == 1 && (produce < 1.5 || produce > 2.5) {
			t.Errorf("%s: %.2f produce requests per call one at a time, want about 2", p.What, produce)
		}
		if p.Ops.KafkaReqs["Fetch"] == 0 || p.Ops.RedisTotal() == 0 {
			t.Errorf("%s: no fetch or no Redis command counted: %+v", p.What, p.Ops)
		}
	}

	acts, err := Actors(ctx, e, ActorsOptions{Counts: []int{100}, Hosts: 1, InFlight: 8, Collector: time.Second})
	if err != nil {
		t.Fatalf("actors: %v", err)
	}
	a := acts[0]
	a.Print(&out)
	switch {
	case a.N != 100 || a.Failed != 0:
		t.Errorf("actors: %d touched, %d failed", a.N, a.Failed)
	case a.Touch <= 0 || a.CPUPerTouch <= 0:
		t.Errorf("actors: touch %v, CPU per touch %v", a.Touch, a.CPUPerTouch)
	case float64(a.Ops.RedisCmds["evalsha"])/float64(a.N) < 1:
		// Placing an instance is a script run.
		t.Errorf("actors: %d placement scripts for %d new instances", a.Ops.RedisCmds["evalsha"], a.N)
	case a.GetLines < a.N:
		t.Errorf("actors: kar get -s actors printed %d lines for %d instances", a.GetLines, a.N)
	case a.Collected < int64(a.N) || a.CollectCPUPer <= 0:
		t.Errorf("actors: collector deactivated %d of %d, CPU %v each", a.Collected, a.N, a.CollectCPUPer)
	}

	pts, err := Sidecars(ctx, e, SidecarsOptions{Sizes: []int{3}, Batch: 10, Idle: time.Second})
	if err != nil {
		t.Fatalf("sidecars: %v", err)
	}
	p := pts[0]
	p.Print(&out)
	switch {
	case p.Members != 3:
		t.Errorf("sidecars: %d members, want 3", p.Members)
	case p.SidecarRSS < 5 || p.SidecarRSS > 500 || p.ComponentRSS <= 0:
		t.Errorf("sidecars: RSS %.1f MiB, component %.1f MiB", p.SidecarRSS, p.ComponentRSS)
	case p.NthJoin <= 0 || p.NthJoin > time.Minute || p.JoinMax <= 0:
		t.Errorf("sidecars: join %v, third member %v", p.JoinMax, p.NthJoin)
	case p.RedisConns < 1 || p.KafkaConns < 1:
		t.Errorf("sidecars: %d Redis and %d Kafka connections per sidecar", p.RedisConns, p.KafkaConns)
	case p.Idle.KafkaReqs["Fetch"] == 0 || p.Idle.RedisTotal() == 0:
		t.Errorf("sidecars: idle mesh with no fetch or no Redis command: %+v", p.Idle)
	}
}
