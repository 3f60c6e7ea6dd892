package sidecar

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/kar-runtime/kar/sidecar/config"
)

// tuneMemory sets the garbage collector of a sidecar: collect when the heap
// grew by Go's default 100% (GOGC, when set, wins), and harder as Go's
// memory nears the soft limit: -memory_limit, else GOMEMLIMIT when set, else
// config.DefaultMemoryLimit. limit was checked by config.Run.Validate. It
// reports whether the default applies, which followLiveHeap then adapts.
//
// 100% against 150% (go run ./bench, two windows of 4 runs of each
// alternated, issue 16): a loaded server sidecar's peak RSS 22.15 against
// 24.25 MiB (Go's heap goal is at least 4 MB times GOGC/100, and a
// sidecar's live heap is 2-3 MB, so 150% kept 2 MB more garbage), for 3.6
// against 2.0 collections per 1,000 calls of both sidecars and CPU per
// call within the run-to-run spread (service 60.0 against 61.0 us, actor
// 63.6 against 60.3, medians of 8). 75% took 0.65 MiB more off at 5.5
// collections per 1,000 calls and 4-7 us more CPU per call.
func tuneMemory(limit string) (byDefault bool) {
	switch {
	case limit != "":
		n, _ := config.ParseMemoryLimit(limit)
		debug.SetMemoryLimit(n)
	case os.Getenv("GOMEMLIMIT") == "":
		debug.SetMemoryLimit(config.DefaultMemoryLimit)
		return true
	}
	return false
}

// followLiveHeap raises the default soft limit while the live heap needs
// more room than it leaves, and lowers it back to base after, looking every
// period until ctx ends.
//
// The default limit keeps an ordinary sidecar small: its live heap is a few
// MB, and the limit binds before GOGC's goal. A sidecar that legitimately
// holds more (tens of thousands of active actor instances, large bodies in
// flight) would otherwise collect without pause as its live heap nears the
// limit, up to half its CPU (docs/scaling.md measured it). With the limit
// kept above what GOGC's goal needs, such a sidecar collects as any Go
// program does, and a small one stays as small as before.
func followLiveHeap(ctx context.Context, base int64, period time.Duration) {
	samples := make([]metrics.Sample, len(memoryMetrics))
	for i, name := range memoryMetrics {
		samples[i].Name = name
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		metrics.Read(samples)
		var v memoryReading
		for i, s := range samples {
			if s.Value.Kind() == metrics.KindUint64 {
				*v.field(i) = s.Value.Uint64()
			}
		}
		debug.SetMemoryLimit(limitFor(base, v))
	}
}

// memoryMetrics are the runtime/metrics that limitFor needs, in
// memoryReading's order.
var memoryMetrics = []string{
	"/gc/heap/live:bytes",
	"/gc/gogc:percent",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
}

// memoryReading is one reading of memoryMetrics.
type memoryReading struct {
	live, gogc, total, released, objects, unused, free uint64
}

func (v *memoryReading) field(i int) *uint64 {
	return [...]*uint64{&v.live, &v.gogc, &v.total, &v.released, &v.objects, &v.unused, &v.free}[i]
}

// limitFor is the soft limit for a reading: base, or more when the memory
// the runtime holds besides its heap (stacks, metadata) plus the heap goal
// of GOGC for the live heap, and an eighth for slack, pass it.
func limitFor(base int64, v memoryReading) int64 {
	heap := v.objects + v.unused + v.free
	mapped := v.total - v.released
	nonHeap := uint64(0)
	if mapped > heap {
		nonHeap = mapped - heap
	}
	gogc := v.gogc
	if gogc == 0 || gogc > 1000 {
		gogc = 100
	}
	want := nonHeap + v.live*(100+gogc)/100
	want += want / 8
	return max(base, int64(min(want, 1<<62)))
}
