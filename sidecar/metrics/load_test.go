package metrics

import (
	"math"
	"testing"
	"time"
)

// TestLatencyBucket: every duration falls in the bucket whose bounds hold
// it, and the buckets go up with the duration.
func TestLatencyBucket(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{-time.Second, 0},
		{3 * time.Microsecond, 3},
		{4 * time.Microsecond, 4},
		{7 * time.Microsecond, 7},
		{8 * time.Microsecond, 8},
		{9 * time.Microsecond, 8},
		{10 * time.Microsecond, 9},
		{1000 * time.Hour, nLatency - 1},
	} {
		if got := latencyBucket(tc.d); got != tc.want {
			t.Errorf("latencyBucket(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
	prev := 0
	for us := int64(0); us < 1<<33; us = us*5/4 + 1 {
		d := time.Duration(us) * time.Microsecond
		i := latencyBucket(d)
		lo, hi := bucketBounds(i)
		if float64(us) < lo || float64(us) >= hi {
			t.Fatalf("%d µs in bucket %d of [%v, %v)", us, i, lo, hi)
		}
		if i < prev {
			t.Fatalf("%d µs in bucket %d, below the previous duration's %d", us, i, prev)
		}
		prev = i
	}
}

func TestLatencyQuantile(t *testing.T) {
	b20ms := int64(latencyBucket(20 * time.Millisecond))
	b1ms := int64(latencyBucket(time.Millisecond))
	for _, tc := range []struct {
		name    string
		buckets [][2]int64
		q       float64
		lo, hi  float64 // ms
	}{
		{"none", nil, 0.5, 0, 0},
		{"one bucket", [][2]int64{{b20ms, 10}}, 0.5, 20 * 0.8, 20 * 1.25},
		{"merged pairs of one bucket", [][2]int64{{b1ms, 1}, {b20ms, 5}, {b20ms, 5}}, 0.99, 20 * 0.8, 20 * 1.25},
		{"median among the fast", [][2]int64{{b1ms, 90}, {b20ms, 10}}, 0.5, 0.8, 1.25},
		{"p99 among the slow", [][2]int64{{b1ms, 90}, {b20ms, 10}}, 0.99, 20 * 0.8, 20 * 1.25},
		{"bad buckets ignored", [][2]int64{{-1, 5}, {nLatency, 5}, {b1ms, -3}}, 0.5, 0, 0},
	} {
		got := LatencyQuantile(tc.buckets, tc.q)
		if got < tc.lo || got > tc.hi {
			t.Errorf("%s: q%v = %v ms, want in [%v, %v]", tc.name, tc.q, got, tc.lo, tc.hi)
		}
	}
}

// TestSnapshotWindows: rates come from the last period, latencies from
// the last LatencyWindow, totals from the start.
func TestSnapshotWindows(t *testing.T) {
	m := New("a")
	var h loadHistory
	now := time.Unix(1000, 0)
	m.snapshot(&h, now)
	serve := func(n int, status int, took time.Duration) {
		for range n {
			m.Begin(false, "svc").End(took)
			m.Served(Sync, false, "svc", status)
		}
	}
	serve(8, 200, 20*time.Millisecond)
	serve(2, 500, time.Millisecond)
	now = now.Add(2 * time.Second)
	l := m.snapshot(&h, now)
	if len(l) != 1 {
		t.Fatalf("targets: %+v", l)
	}
	got := l[0]
	if got.Served != 10 || got.Errors != 2 || got.PerSecond != 5 || got.ErrorsPerSecond != 1 || got.InFlight != 0 {
		t.Errorf("after 10 calls in 2 s: %+v", got)
	}
	if p := LatencyQuantile(got.Latency, 0.5); p < 16 || p > 25 {
		t.Errorf("p50 = %v ms, want about 20", p)
	}
	// Ten quiet periods later the calls have left the latency window and
	// the rates are 0; the totals stay.
	for range LatencyWindow / LoadPeriod {
		now = now.Add(LoadPeriod)
		l = m.snapshot(&h, now)
	}
	got = l[0]
	if got.Served != 10 || got.Errors != 2 || got.PerSecond != 0 || len(got.Latency) != 0 {
		t.Errorf("after a quiet window: %+v", got)
	}
	if p := LatencyQuantile(got.Latency, 0.99); p != 0 || math.IsNaN(p) {
		t.Errorf("p99 of nothing = %v", p)
	}
}

// BenchmarkServedCall is what a sidecar records per request its component
// serves: Begin, End (in-flight count and latency bucket) and Served.
func BenchmarkServedCall(b *testing.B) {
	m := New("a")
	b.ReportAllocs()
	for range b.N {
		m.Begin(false, "svc").End(time.Millisecond)
		m.Served(Sync, false, "svc", 200)
	}
}
