package events

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkDelivery measures events delivered per second to one
// subscriber whose method returns at once: the cost of reading from Kafka,
// checking the lease and committing the offset in Redis, one event at a
// time. Run: go test ./sidecar/events -run ^$ -bench Delivery -benchtime 5000x
func BenchmarkDelivery(b *testing.B) {
	w := newWorld(b)
	var delivered atomic.Int64
	s, _ := w.service(b, "sc1", func(context.Context, string, string, string, string, []byte) error {
		delivered.Add(1)
		return nil
	})
	base := serve(b, s).URL
	subscribe(b, base, "a1", "s1", `{"path":"/m","topic":"bench","contentType":"application/json","oldestOffset":true}`)
	ctx := context.Background()
	const batch = 500
	for i := 0; i < b.N; i += batch {
		evs := make([]published, 0, batch)
		for j := i; j < min(i+batch, b.N); j++ {
			p, err := fromPublish(testApp, nil, []byte(fmt.Sprintf(`{"n":%d}`, j)))
			if err != nil {
				b.Fatal(err)
			}
			evs = append(evs, p)
		}
		if err := s.publish(ctx, "bench", evs...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	run(b, s)
	for delivered.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("only %d of %d delivered after 5 minutes", delivered.Load(), b.N)
		}
	}
	el := time.Since(start)
	b.StopTimer()
	rate := float64(b.N) / el.Seconds()
	b.ReportMetric(rate, "events/s")
	b.Logf("%d events delivered in %v: %.0f events/s", b.N, el, rate)
}
