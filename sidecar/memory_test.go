package sidecar

import (
	"context"
	"runtime"
	"runtime/debug"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// A sidecar collects at defaultGCPercent, unless GOGC says otherwise.
func TestTuneMemoryGCPercent(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	for _, tc := range []struct {
		gogc string
		want int
	}{{"", defaultGCPercent}, {"123", 123}, {"off", 123}} {
		debug.SetGCPercent(123) // as the runtime would have read GOGC=123
		t.Setenv("GOGC", tc.gogc)
		tuneMemory("")
		if got := debug.SetGCPercent(123); got != tc.want {
			t.Errorf("GOGC=%q: collecting at %d%%, want %d%%", tc.gogc, got, tc.want)
		}
	}
}

func TestLimitFor(t *testing.T) {
	const base = config.DefaultMemoryLimit
	const MB = 1 << 20
	// A loaded sidecar's reading (bench, 64 in flight): 7.4 MB besides the heap.
	small := memoryReading{live: 3 * MB, gogc: 150, total: 22 * MB, released: 5 * MB, objects: 4 * MB, unused: 2 * MB, free: 3 * MB}
	tests := []struct {
		name string
		v    memoryReading
		want int64
	}{
		{"a small live heap keeps the default", small, base},
		{"a live heap past it gets GOGC's room", memoryReading{live: 40 * MB, gogc: 150, total: 120 * MB, released: 10 * MB, objects: 60 * MB, unused: 10 * MB, free: 30 * MB},
			(10*MB + 100*MB) * 9 / 8},
		{"GOGC off counts as 100", memoryReading{live: 40 * MB, gogc: 0, total: 90 * MB, objects: 80 * MB}, (10*MB + 80*MB) * 9 / 8},
		{"an empty reading keeps the default", memoryReading{}, base},
	}
	for _, tt := range tests {
		if got := limitFor(base, tt.v); got != tt.want {
			t.Errorf("%s: limitFor = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// A process whose live heap outgrows the default limit gets a limit above
// it within a period, and the default back once the heap is gone.
func TestFollowLiveHeap(t *testing.T) {
	old := debug.SetMemoryLimit(-1)
	defer debug.SetMemoryLimit(old)
	debug.SetMemoryLimit(config.DefaultMemoryLimit)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { followLiveHeap(ctx, config.DefaultMemoryLimit, 20*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20) // 64 MiB, all live
	}
	waitLimit(t, func(l int64) bool { return l > 64<<20 }, "above the 64 MiB live heap")
	runtime.KeepAlive(live)
	live = nil
	waitLimit(t, func(l int64) bool { return l == config.DefaultMemoryLimit }, "back to the default")
}

func waitLimit(t *testing.T, ok func(int64) bool, what string) {
	t.Helper()
	testenv.Eventually(t, 20*time.Second, func() bool {
		runtime.GC() // the live heap is as of the last collection
		return ok(debug.SetMemoryLimit(-1))
	}, "the soft limit to be %s", what)
}
