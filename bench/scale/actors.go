package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ActorsOptions configure the actors benchmark.
type ActorsOptions struct {
	Counts    []int         // instances touched once, per run
	Hosts     int           // sidecars hosting the actor type
	InFlight  int           // calls in flight while touching
	State     bool          // the method writes one state key (else it does nothing)
	Collector time.Duration // -actor_collector_interval of the hosts
}

// ActorsPoint is the figures of one run.
type ActorsPoint struct {
	N     int
	State bool
	// Touch: every instance called once (activation + method).
	Touch          time.Duration
	Failed         int64
	CPUPerTouch    time.Duration // sidecars + components
	RedisCPUPer    time.Duration
	Ops            Delta // during the touch
	RedisPerActive float64
	HostRSSPer     float64 // bytes per instance, host sidecars' RSS growth
	// Get: `kar get -s actors` with every instance active.
	Get      time.Duration
	GetLines int
	// Collector: the hosts' collector deactivating every instance.
	CollectBusy, CollectSpan time.Duration
	CollectCPUPer            time.Duration
	Collected                int64
	RedisPerIdle             float64 // bytes per instance left after collection (its state)
}

// Actors touches Counts[i] fresh instances of an actor type hosted by
// o.Hosts sidecars, in a fresh application state each time.
func Actors(ctx context.Context, e *Env, o ActorsOptions) ([]ActorsPoint, error) {
	var points []ActorsPoint
	for run, n := range o.Counts {
		pt, err := actorsRun(ctx, e, o, n, "A"+strconv.Itoa(run))
		if err != nil {
			return points, err
		}
		points = append(points, pt)
	}
	return points, nil
}

func actorsRun(ctx context.Context, e *Env, o ActorsOptions, n int, typ string) (ActorsPoint, error) {
	pt := ActorsPoint{N: n, State: o.State}
	defer e.StopAll()
	caller, err := e.StartSidecar(nil, false)
	if err != nil {
		return pt, err
	}
	var hosts []*Proc
	for i := 0; i < o.Hosts; i++ {
		h, err := e.StartSidecar([]string{"-actors", typ, "-actor_collector_interval", o.Collector.String()}, true)
		if err != nil {
			return pt, err
		}
		hosts = append(hosts, h)
	}
	method := "touch"
	if o.State {
		method = "set"
	}
	url := func(i int) string {
		return caller.URL() + "/kar/v1/actor/" + typ + "/" + strconv.Itoa(i) + "/call/" + method
	}
	// Warm up every host's path with one instance per host, outside the figures.
	if err := waitCall(e, caller.URL()+"/kar/v1/actor/"+typ+"/warm/call/touch", `[]`, 60*time.Second); err != nil {
		return pt, err
	}
	_, _ = Parallel(4*o.Hosts, 4, func(i int) error {
		return callActor(e, caller.URL()+"/kar/v1/actor/"+typ+"/warm"+strconv.Itoa(i)+"/call/touch")
	})
	all := append([]*Proc{caller}, hosts...)
	time.Sleep(time.Second)
	rss0 := sumRSS(hosts)
	cpu0 := sumTreeCPU(all)
	s0, err := e.Snap(ctx)
	if err != nil {
		return pt, err
	}
	start := time.Now()
	pt.Failed, err = Parallel(n, o.InFlight, func(i int) error { return callActor(e, url(i)) })
	pt.Touch = time.Since(start)
	if pt.Failed > int64(n)/100 {
		return pt, fmt.Errorf("%d of %d first calls failed: %w", pt.Failed, n, err)
	}
	s1, err := e.Snap(ctx)
	if err != nil {
		return pt, err
	}
	pt.Ops = s1.Sub(s0)
	pt.CPUPerTouch = perCall(sumTreeCPU(all)-cpu0, n)
	pt.RedisCPUPer = perCall(pt.Ops.RedisCPU, n)
	pt.RedisPerActive = float64(pt.Ops.Memory) / float64(n)
	pt.HostRSSPer = (sumRSS(hosts) - rss0) * (1 << 20) / float64(n)

	// kar get -s actors, with every instance active.
	start = time.Now()
	cmd := exec.Command(e.kar, "get", "-app", app, "-s", "actors")
	cmd.Env = e.environ()
	out, err := cmd.Output()
	pt.Get = time.Since(start)
	if err != nil {
		return pt, fmt.Errorf("kar get -s actors: %w", err)
	}
	pt.GetLines = strings.Count(string(out), "\n")

	// The collector: every instance goes once idle longer than the
	// interval. Busy is the time the count of active instances was
	// falling; span from the first fall to the last.
	if err := collect(ctx, e, hosts, all, &pt, s1); err != nil {
		return pt, err
	}
	return pt, nil
}

func collect(ctx context.Context, e *Env, hosts, all []*Proc, pt *ActorsPoint, before Snapshot) error {
	active := func() int64 {
		var a int64
		for _, h := range hosts {
			if s, err := e.componentStats(h); err == nil {
				a += s.Activated - s.Deactivated
			}
		}
		return a
	}
	const tick = 100 * time.Millisecond
	last := active()
	startCount := last
	cpuStart := sumTreeCPU(all)
	var first, end time.Time
	limit := 3*time.Duration(pt.N)*time.Millisecond + 10*time.Minute
	deadline := time.Now().Add(limit)
	for last > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("collector: %d instances still active after %s", last, limit)
		}
		cpu := sumTreeCPU(all)
		time.Sleep(tick)
		a := active()
		if a < last {
			if first.IsZero() {
				first = time.Now().Add(-tick)
				cpuStart = cpu
			}
			pt.CollectBusy += tick
			end = time.Now()
		}
		last = a
	}
	pt.Collected = startCount
	pt.CollectSpan = end.Sub(first)
	pt.CollectCPUPer = perCall(sumTreeCPU(all)-cpuStart, int(startCount))
	after, err := e.Snap(ctx)
	if err != nil {
		return err
	}
	// What stays once every instance is idle: memory relative to before
	// the touch (placements are gone, state stays).
	pt.RedisPerIdle = float64(after.RedisMemory-(before.RedisMemory-pt.Ops.Memory)) / float64(pt.N)
	return nil
}

func callActor(e *Env, url string) error {
	_, err := e.Do(http.MethodPost, url, "application/kar+json", `[]`)
	return err
}

func sumRSS(ps []*Proc) float64 {
	var t float64
	for _, p := range ps {
		t += procMemory(p.PID()).RSS
	}
	return t
}

func perCall(seconds float64, n int) time.Duration {
	if n == 0 {
		return 0
	}
	return time.Duration(seconds / float64(n) * float64(time.Second))
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond)) }

// Print writes the figures of one run.
func (pt ActorsPoint) Print(w io.Writer) {
	what := "a method doing nothing"
	if pt.State {
		what = "a method writing one state key"
	}
	fmt.Fprintf(w, "actors: %d instances touched once (%s)\n", pt.N, what)
	fmt.Fprintf(w, "  touch: %.2f s, %.0f first calls/s, %d failed; CPU per first call: sidecars+components %s, redis-server %s\n",
		pt.Touch.Seconds(), float64(pt.N)/pt.Touch.Seconds(), pt.Failed, us(pt.CPUPerTouch), us(pt.RedisCPUPer))
	fmt.Fprintf(w, "  per first call: Redis %.2f commands (%s); Kafka %.2f requests (%s)\n",
		float64(pt.Ops.RedisTotal())/float64(pt.N), Per(pt.Ops.RedisCmds, float64(pt.N)),
		float64(pt.Ops.KafkaTotal())/float64(pt.N), Per(pt.Ops.KafkaReqs, float64(pt.N)))
	fmt.Fprintf(w, "  memory per active instance: Redis %.0f B (used_memory), host sidecars %.0f B (RSS growth)\n", pt.RedisPerActive, pt.HostRSSPer)
	fmt.Fprintf(w, "  kar get -s actors: %s (%d lines)\n", ms(pt.Get), pt.GetLines)
	fmt.Fprintf(w, "  collector: %d instances deactivated in %.2f s of work (%.2f s from first to last), CPU %s per instance; Redis left per instance %.0f B\n",
		pt.Collected, pt.CollectBusy.Seconds(), pt.CollectSpan.Seconds(), us(pt.CollectCPUPer), pt.RedisPerIdle)
}

func selfPID() int { return os.Getpid() }
