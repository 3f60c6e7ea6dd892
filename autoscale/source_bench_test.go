package autoscale_test

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/autoscale/autoscaletest"
	"github.com/kar-runtime/kar/internal/testenv"
)

// BenchmarkSourceRead is the cost of one poll of a scaler: the load of a
// target read from Redis and Kafka, with three sidecars in the mesh.
// cpu-ms/op is this process's CPU per poll (with the in-process test
// broker's); redis-cmds/op counts the commands Redis processed per poll (its own
// INFO excluded); the sidecars' own writes (a load record and a lease
// renewal each per second) add a little.
//
//	go test -run '^$' -bench SourceRead -benchtime 200x ./autoscale/
func BenchmarkSourceRead(b *testing.B) {
	be := testenv.Backend(b)
	const app = "benchload"
	for i := range 3 {
		autoscaletest.Sidecar(b, be, "sidecar"+strconv.Itoa(i), "-app", app, "-service", "s"+strconv.Itoa(i),
			"-app_port", strconv.Itoa(autoscaletest.Component(b)))
	}
	ctx := context.Background()
	cfg := autoscaletest.Config(be)
	src, err := autoscale.Dial(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	rdb, err := store.Connect(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer rdb.Close()
	processed := func() int64 {
		s, err := rdb.Info(ctx, "stats").Result()
		if err != nil {
			b.Fatal(err)
		}
		for _, l := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				return n
			}
		}
		return 0
	}
	target := autoscale.Target{App: app, Type: "service", Name: "s0"}
	testenv.Eventually(b, 30*time.Second, func() bool {
		in, err := src.Read(ctx, target)
		return err == nil && in.Members == 1
	}, "s0 to have its member")
	before, cpu0 := processed(), cpuTime()
	b.ResetTimer()
	for range b.N {
		if _, err := src.Read(ctx, target); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(processed()-before-1)/float64(b.N), "redis-cmds/op")
}

// cpuTime is the CPU this process used, user and system: the scaler's
// side of a poll, and the test's Kafka-protocol broker answering it (it
// runs in this process; Redis and the sidecars do not).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
