package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soak loads one server sidecar for dur with inflight calls, half service
// calls and half actor calls, each actor worker moving to an id never used
// before after perID calls (0: never, as the bench's 64 instances), so
// instances keep being activated and collected; every call has a new
// request id. It
// samples the server sidecar's RSS and Go heap every period. It prints
// each sample, then the start, peak and end RSS and the slope of RSS over
// the run after its first minute (warm-up): a sidecar whose maps grow with
// the ids it has seen shows a positive slope.
//
//	scripts/build.sh && go run ./bench -soak 10m [-soak.every 5s] [-soak.per_id 100] [-inflight 64]
func (e *env) soak(dur, every time.Duration, inflight, perID int) error {
	serverPort, _ := freePort()
	server, err := e.startKar("bench", []string{"-service", "echo", "-actors", "Counter", "-runtime_port", strconv.Itoa(serverPort)}, true)
	if err != nil {
		return err
	}
	serverURL := "http://127.0.0.1:" + strconv.Itoa(serverPort)
	caller, callerURL, err := e.startSidecar("bench")
	if err != nil {
		return err
	}
	sides := sidecars{caller: caller.Process.Pid, server: server.Process.Pid, callerURL: callerURL, serverURL: serverURL}
	svc := callerURL + "/kar/v1/service/echo/call/echo"
	if err := e.waitCall(svc, 30*time.Second); err != nil {
		return err
	}
	if err := e.waitCall(callerURL+"/kar/v1/actor/Counter/warm/call/incr", 30*time.Second); err != nil {
		return err
	}
	fmt.Printf("soak: %s of load, %d in flight (half service calls, half actor calls, a new actor id every %d calls of a worker), server sidecar sampled every %s\n", dur, inflight, perID, every)
	fmt.Println("   time    RSS MiB  its own  files  heap in use MiB  live heap MiB  goroutines      calls")

	var calls, failed atomic.Int64
	var ids atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var u string
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				switch {
				case i%2 == 0:
					u = svc
				case n == 0 || perID > 0 && n%perID == 0:
					u = fmt.Sprintf("%s/kar/v1/actor/Counter/s%d/call/incr", callerURL, ids.Add(1))
				}
				if e.call(u) == nil {
					calls.Add(1)
				} else {
					failed.Add(1)
				}
			}
		}()
	}

	// A sample's RSS is split as the bench's figure is: the sidecar's own
	// pages and those of the files it maps (the kar executable's, mapped
	// 64 KiB at a time as its code first runs).
	type sample struct {
		t               time.Duration
		rss, anon, file float64
	}
	var samples []sample
	start := time.Now()
	u0 := e.snapshot(sides)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for time.Since(start) < dur {
		<-tick.C
		t := time.Since(start)
		_, rss := memory(server.Process.Pid)
		anon, file := rssParts(server.Process.Pid)
		g := goStats(e.client, serverURL)
		samples = append(samples, sample{t, rss, anon, file})
		fmt.Printf("%7s %10.1f %8.1f %6.1f %16.1f %14.1f %11.0f %10d\n", t.Round(time.Second), rss, anon, file, g.heapInuse/(1<<20), g.heapLive/(1<<20), g.goroutines, calls.Load())
	}
	close(stop)
	wg.Wait()
	elapsed := time.Since(start)
	u := e.snapshot(sides).sub(u0)
	hwm, _ := memory(server.Process.Pid)

	// Least-squares slope of RSS over the samples after the first minute.
	var n, sx, sy, sxx, sxy float64
	for _, s := range samples {
		if s.t < time.Minute && dur > 2*time.Minute {
			continue
		}
		x := s.t.Minutes()
		n++
		sx += x
		sy += s.rss
		sxx += x * x
		sxy += x * s.rss
	}
	slope := 0.0
	if d := n*sxx - sx*sx; n > 1 && d != 0 {
		slope = (n*sxy - sx*sy) / d
	}
	peak := 0.0
	for _, s := range samples {
		peak = max(peak, s.rss)
	}
	c := calls.Load()
	fmt.Printf("calls: %d (%.0f/s), failed %d; %d distinct actor ids; CPU per call: caller sidecar %s, server sidecar %s, component %s\n",
		c, float64(c)/elapsed.Seconds(), failed.Load(), ids.Load(), us(u.caller/float64(max(c, 1))), us(u.server/float64(max(c, 1))), us(u.component/float64(max(c, 1))))
	if len(samples) > 0 {
		first, last := samples[0], samples[len(samples)-1]
		fmt.Printf("server sidecar RSS: start %.1f MiB, peak %.1f MiB (VmHWM %.1f), end %.1f MiB, slope %+.3f MiB/min after the first minute\n",
			first.rss, peak, hwm, last.rss, slope)
		anonLo, anonHi := first.anon, first.anon
		for _, s := range samples {
			anonLo, anonHi = min(anonLo, s.anon), max(anonHi, s.anon)
		}
		fmt.Printf("  its own %.1f MiB at the start, %.1f-%.1f throughout, %.1f at the end; pages of files %.1f MiB at the start, %.1f at the end\n",
			first.anon, anonLo, anonHi, last.anon, first.file, last.file)
	}
	return nil
}

// goRuntime is what a sidecar's /metrics says of its Go runtime (-1: not
// read).
type goRuntime struct{ heapInuse, heapLive, goroutines float64 }

// goStats reads a sidecar's Go heap in use, live heap (as of the last
// collection) and goroutine count from its /metrics.
func goStats(c *http.Client, base string) goRuntime {
	g := goRuntime{-1, -1, -1}
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		return g
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 4<<20))
	for sc.Scan() {
		name, v, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(v, 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_memstats_heap_inuse_bytes":
			g.heapInuse = f
		case "go_gc_heap_live_bytes":
			g.heapLive = f
		case "go_goroutines":
			g.goroutines = f
		}
	}
	return g
}

func runSoak(dur, every time.Duration, inflight, perID int) error {
	e, stop, err := startEnv()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("kar soak: %s (%s); redis-server and the Kafka-protocol broker (kfake) in their own process at %s; %d CPUs\n", e.kar, buildOf(e.kar), e.brokers, numCPU())
	return e.soak(dur, every, inflight, perID)
}
