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

// BenchmarkSubscribeLatency measures how long a new subscription takes to
// deliver an event already in its topic: from the subscribe request to
// the delivery (ms/first). It counts the runner noticing the subscription,
// taking its lease and starting to read the topic: the part the reader
// adds is what this figure watches (sarama's consumer waited 100 ms before
// its first fetch). Run: go test ./sidecar/events -run ^$ -bench SubscribeLatency -benchtime 20x
func BenchmarkSubscribeLatency(b *testing.B) {
	w := newWorld(b)
	got := make(chan string, 16)
	s, _ := w.service(b, "sc1", func(_ context.Context, _, id, _, _ string, _ []byte) error {
		got <- id
		return nil
	})
	base := serve(b, s).URL
	publishN(b, base, "first", 0, 1)
	run(b, s)
	var total time.Duration
	b.ResetTimer()
	for i := range b.N {
		id := fmt.Sprintf("a%d", i)
		start := time.Now()
		subscribe(b, base, id, "s", `{"path":"/m","topic":"first","contentType":"application/json","oldestOffset":true}`)
		select {
		case d := <-got:
			if d != id {
				b.Fatalf("delivered to %s, want %s", d, id)
			}
		case <-time.After(time.Minute):
			b.Fatal("no delivery within a minute")
		}
		total += time.Since(start)
		// Keep one subscription at a time: the runner's work per round
		// stays the same.
		expect(b, "DELETE", base+"/kar/v1/actor/Sub/"+id+"/events/s", "", "", 200, "1")
	}
	b.StopTimer()
	ms := float64(total.Microseconds()) / 1000 / float64(b.N)
	b.ReportMetric(ms, "ms/first")
	b.Logf("%d new subscriptions: %.1f ms from subscribe to first delivery on average", b.N, ms)
}
