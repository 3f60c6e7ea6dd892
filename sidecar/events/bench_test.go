package events

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
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

// BenchmarkIdleSubscriptions measures what n idle subscriptions of one
// topic (each its own group, as KAR's default) cost three sidecars' runners
// with the default timings: the process's CPU and Redis's commands (those
// scripts run included) and CPU per second, after every subscription has
// delivered an event. Run: go test ./sidecar/events -run ^$ -bench IdleSubscriptions -benchtime 1x
// (BENCH_SUBS=10000 for 10^4; add -cpuprofile to see where the CPU goes).
func BenchmarkIdleSubscriptions(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("BENCH_SUBS")); err == nil && v > 0 {
		n = v
	}
	w := newWorld(b)
	var delivered atomic.Int64
	deliver := func(context.Context, string, string, string, string, []byte) error {
		delivered.Add(1)
		return nil
	}
	defaults := func(o *Options) { o.LeaseTTL, o.Poll, o.Logger = 0, 0, slog.New(slog.DiscardHandler) }
	s1, _ := w.service(b, "sc1", deliver, defaults)
	s2, _ := w.service(b, "sc2", deliver, defaults)
	s3, _ := w.service(b, "sc3", deliver, defaults)
	base := serve(b, s1).URL
	expect(b, "PUT", base+"/kar/v1/event/idle", "application/json", `{"numPartitions":1}`, 201, "")
	start := time.Now()
	if failed := parallel(n, 32, func(i int) error {
		st, body := do(b, "PUT", fmt.Sprintf("%s/kar/v1/actor/Sub/a%d/events/s%d", base, i, i), "application/json",
			`{"path":"/m","topic":"idle","contentType":"application/json","oldestOffset":true}`)
		if st >= 300 {
			return fmt.Errorf("subscribe: %d %s", st, body)
		}
		return nil
	}); failed > 0 {
		b.Fatalf("%d subscriptions failed", failed)
	}
	created := time.Since(start)
	mem0 := inUse()
	run(b, s1)
	run(b, s2)
	run(b, s3)
	publishN(b, base, "idle", 0, 1)
	for delivered.Load() < int64(n) {
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("%d of %d delivered after 10 minutes", delivered.Load(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	first := time.Since(start) - created
	time.Sleep(2 * time.Second) // the last commits
	perSub := float64(inUse()-mem0) / float64(n)
	b.ResetTimer()
	ctx := context.Background()
	window := 10 * time.Second
	cmds0, rcpu0 := redisCommands(ctx, b, w.rdb)
	cpu0 := processCPU()
	time.Sleep(window)
	cpu := processCPU() - cpu0
	cmds1, rcpu1 := redisCommands(ctx, b, w.rdb)
	b.StopTimer()
	sec := window.Seconds()
	b.ReportMetric(cpu.Seconds()/sec, "cores")
	b.ReportMetric(float64(cmds1-cmds0)/sec, "redis-cmds/s")
	b.ReportMetric(perSub, "B/subscription")
	b.Logf("%d subscriptions: created in %v, all delivering in %v, %.0f B of heap and stacks each; idle: this process %.3f cores, Redis %.0f commands/s and %.3f cores",
		n, created.Round(time.Millisecond), first.Round(time.Millisecond), perSub, cpu.Seconds()/sec, float64(cmds1-cmds0)/sec, (rcpu1-rcpu0)/sec)
}

// redisCommands reads the commands Redis has run (INFO commandstats, the
// scripts' own included) and its CPU seconds.
func redisCommands(ctx context.Context, b *testing.B, rdb redis.UniversalClient) (int64, float64) {
	info, err := rdb.Info(ctx, "commandstats", "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var calls int64
	var cpu float64
	for _, line := range strings.Split(info, "\r\n") {
		if strings.HasPrefix(line, "cmdstat_") {
			if i := strings.Index(line, "calls="); i >= 0 {
				v, _ := strconv.ParseInt(strings.SplitN(line[i+6:], ",", 2)[0], 10, 64)
				calls += v
			}
		}
		for _, k := range []string{"used_cpu_sys:", "used_cpu_user:"} {
			if strings.HasPrefix(line, k) {
				v, _ := strconv.ParseFloat(line[len(k):], 64)
				cpu += v
			}
		}
	}
	return calls, cpu
}

// inUse is the heap and goroutine stacks in use after a collection.
func inUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse + ms.StackInuse
}

// processCPU is this process's CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// parallel runs f(0..n-1) with at most k at once and counts the failures.
func parallel(n, k int, f func(int) error) int {
	var failed atomic.Int64
	var wg sync.WaitGroup
	sem := make(chan struct{}, k)
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if f(i) != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(failed.Load())
}
