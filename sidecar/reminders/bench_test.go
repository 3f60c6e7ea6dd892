package reminders

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"
)

// BenchmarkLateness schedules 1000 one-shot reminders due evenly over one
// second and reports how late one scheduler fires them (fire returns at
// once, as an accepted async call would).
//
//	go test -run XXX -bench Lateness ./sidecar/reminders/
func BenchmarkLateness(b *testing.B) {
	be := backend(b)
	s, _ := newStore(b, be.RedisAddr(), Options{})
	const n = 1000
	var mu sync.Mutex
	var lateness []time.Duration
	done := make(chan struct{}, n)
	runScheduler(b, s, func(_ context.Context, r Reminder) error {
		late := time.Since(r.TargetTime)
		mu.Lock()
		lateness = append(lateness, late)
		mu.Unlock()
		done <- struct{}{}
		return nil
	})

	b.ResetTimer()
	for iter := 0; iter < b.N; iter++ {
		b.StopTimer()
		// Scheduling takes a while itself: start the window after it.
		start := time.Now().Add(500 * time.Millisecond)
		for i := 0; i < n; i++ {
			r := Reminder{Actor: Actor{Type: "Bench", ID: fmt.Sprint(i % 50)}, ID: fmt.Sprintf("%d-%d", iter, i),
				Path: "/tick", TargetTime: start.Add(time.Duration(i) * time.Second / n)}
			if _, err := s.Schedule(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
		if time.Now().After(start) {
			b.Fatalf("scheduling %d reminders took more than 500ms", n)
		}
		b.StartTimer()
		deadline := time.After(30 * time.Second)
		for i := 0; i < n; i++ {
			select {
			case <-done:
			case <-deadline:
				b.Fatalf("only %d of %d reminders fired within 30s", i, n)
			}
		}
	}
	b.StopTimer()

	mu.Lock()
	defer mu.Unlock()
	sort.Slice(lateness, func(i, j int) bool { return lateness[i] < lateness[j] })
	q := func(p float64) float64 {
		return float64(lateness[int(p*float64(len(lateness)-1))]) / float64(time.Millisecond)
	}
	if testing.Verbose() {
		b.Logf("lateness percentiles: p90 %.2fms p95 %.2fms p98 %.2fms", q(0.9), q(0.95), q(0.98))
	}
	b.ReportMetric(q(0.50), "p50-late-ms")
	b.ReportMetric(q(0.99), "p99-late-ms")
	b.ReportMetric(q(1), "max-late-ms")
	b.ReportMetric(float64(lateness[0])/float64(time.Millisecond), "min-late-ms")
}
