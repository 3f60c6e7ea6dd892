package sidecar

import (
	"context"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"time"

	"github.com/kar-runtime/kar/sidecar/config"
)

// defaultGCPercent is how much a sidecar's heap grows between collections
// when GOGC is not set: 75%, where Go's default is 100.
//
// Go's heap goal is at least 4 MB times GOGC/100, and a loaded sidecar's
// live heap is about 2 MB, so the percentage sets the heap's size. Four
// runs of each alternated (go run ./bench, issue 16, after kar dev left the
// binary and envelopes' headers stopped being maps): peak RSS 19.65 MiB at
// 75% against 20.65 at 100%, for 5.75 against 4.05 us of collector CPU per
// service call of both sidecars (runtime/metrics' /cpu/classes/gc/total).
// The headers change had taken more than that off the collector's CPU
// (4.8 us before it, at 100%). Earlier, 150% had cost 2 MiB more than 100%
// for CPU within the run-to-run spread. GOGC, when set, wins.
const defaultGCPercent = 75

// tuneMemory sets the garbage collector of a sidecar: collect when the heap
// grew by defaultGCPercent (GOGC, when set, wins), and harder as Go's
// memory nears the soft limit: -memory_limit, else GOMEMLIMIT when set, else
// config.DefaultMemoryLimit. limit was checked by config.Run.Validate. It
// reports whether the default limit applies, which followLiveHeap then
// adapts.
func tuneMemory(limit string) (byDefault bool) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
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
