package sidecar

import (
	"context"
	"log/slog"
	"runtime"
	"syscall"
	"time"
)

// followLoad runs the sidecar's Go code on one thread while one is enough,
// and on max threads (Go's default: the CPUs, or the container's CPU
// limit) while the sidecar keeps a core busy, looking every period until
// ctx ends. Only when GOMAXPROCS is not set.
//
// A call is a chain of short steps handed from goroutine to goroutine (the
// connection's reader, its worker, the Kafka writer, the fetch loop), and
// a step's work is less than waking a thread: with a thread per CPU, each
// hand-off to a runnable goroutine wakes an idle thread (a futex call and
// a context switch) to run it elsewhere, where one thread runs the next
// step itself once the current one waits. On this project's bench one
// thread took a quarter off a sequential call's latency
// (docs/performance.md); a sidecar that needs more than a core gets more.
func followLoad(ctx context.Context, max int, period time.Duration) {
	if max <= 1 {
		return
	}
	t := threads{max: max}
	runtime.GOMAXPROCS(1)
	last, at := cpuTime(), time.Now()
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now, cpu := time.Now(), cpuTime()
		busy := (cpu - last).Seconds() / now.Sub(at).Seconds()
		last, at = cpu, now
		if n := t.next(busy); n > 0 {
			slog.Debug("threads running the sidecar's Go code", "threads", n, "cores_busy", busy)
			runtime.GOMAXPROCS(n)
		}
	}
}

// threads decides how many threads run Go code from how busy the sidecar
// was.
type threads struct {
	max    int
	raised bool
	calm   int // periods in a row below lowBusy while raised
}

const (
	// highBusy (cores) is a single thread near its limit: more are needed.
	highBusy = 0.75
	// lowBusy is what one thread serves with room to spare; calmPeriods in
	// a row of it bring the sidecar back to one thread (not at the first
	// lull: a load that comes and goes would flap).
	lowBusy     = 0.4
	calmPeriods = 5
)

// next takes the cores the sidecar kept busy over the last period and
// returns the new thread count, or 0 for no change.
func (t *threads) next(busy float64) int {
	switch {
	case !t.raised && busy >= highBusy:
		t.raised, t.calm = true, 0
		return t.max
	case t.raised && busy < lowBusy:
		if t.calm++; t.calm >= calmPeriods {
			t.raised, t.calm = false, 0
			return 1
		}
	case t.raised:
		t.calm = 0
	}
	return 0
}

// cpuTime is the CPU time (user and system) the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
