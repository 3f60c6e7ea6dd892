package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// sidecars are the two sidecars of the load: the caller's (no component)
// and the server's (its component is its child process).
type sidecars struct {
	caller, server       int
	callerURL, serverURL string
}

// usage is what the processes of a load had spent at one moment: CPU
// seconds per process, and the allocations each sidecar's runtime counted
// (its /metrics, Prometheus' Go collector).
type usage struct {
	caller, server, component, client, backend float64
	callerAllocs, serverAllocs                 memCount
	// callerSys, serverSys: read and write system calls (/proc/PID/io),
	// a count the machine's load does not blur.
	callerSys, serverSys float64
	// callerSleeps, serverSleeps: the times a thread of the sidecar went
	// to sleep (voluntary context switches of all its threads): each is
	// paid again by the wake-up that follows, so they count the
	// goroutine hand-offs that found no thread awake.
	callerSleeps, serverSleeps float64
	kafka                      kafkaCount
}

// memCount: allocations, bytes allocated, GC cycles and the CPU seconds
// the collector took, as the sidecar's runtime counts them.
type memCount struct{ mallocs, bytes, gcs, gcCPU float64 }

func (m memCount) sub(o memCount) memCount {
	return memCount{m.mallocs - o.mallocs, m.bytes - o.bytes, m.gcs - o.gcs, m.gcCPU - o.gcCPU}
}

func (e *env) snapshot(s sidecars) usage {
	u := usage{
		caller:  procCPU(s.caller),
		server:  procCPU(s.server),
		client:  selfCPU(),
		backend: e.backendCPU(),
		kafka:   e.kafkaCount(),
	}
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(s.server)).Output()
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		u.component += procCPU(pid)
	}
	u.callerSys, u.serverSys = syscalls(s.caller), syscalls(s.server)
	u.callerSleeps, u.serverSleeps = sleeps(s.caller), sleeps(s.server)
	u.callerAllocs = e.memCount(s.callerURL)
	u.serverAllocs = e.memCount(s.serverURL)
	return u
}

// memCount reads a sidecar's allocation counters from its /metrics; the
// scrape itself allocates a few thousand objects, a rounding error over a
// load of thousands of calls.
func (e *env) memCount(url string) memCount {
	var m memCount
	resp, err := e.client.Get(url + "/metrics")
	if err != nil {
		return m
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		v, _ := strconv.ParseFloat(val, 64)
		switch name {
		case "go_memstats_mallocs_total":
			m.mallocs = v
		case "go_memstats_alloc_bytes_total":
			m.bytes = v
		case "go_gc_duration_seconds_count":
			m.gcs = v
		case "go_cpu_classes_gc_total_cpu_seconds_total":
			m.gcCPU = v
		}
	}
	return m
}

func (u usage) sub(o usage) usage {
	return usage{
		caller: u.caller - o.caller, server: u.server - o.server, component: u.component - o.component,
		client: u.client - o.client, backend: u.backend - o.backend,
		callerSys: u.callerSys - o.callerSys, serverSys: u.serverSys - o.serverSys,
		callerSleeps: u.callerSleeps - o.callerSleeps, serverSleeps: u.serverSleeps - o.serverSleeps,
		callerAllocs: u.callerAllocs.sub(o.callerAllocs),
		serverAllocs: u.serverAllocs.sub(o.serverAllocs),
		kafka:        u.kafka.sub(o.kafka),
	}
}

// print gives a load's CPU and allocations per call, each sidecar apart,
// and the sidecars' CPU as a ratio to the floor's CPU per round trip and
// to the chain floor's relays under the same load.
func (u usage) print(calls int64, floorCPU, chainCPU float64) {
	if calls == 0 {
		return
	}
	n := float64(calls)
	both := (u.caller + u.server) / n
	fmt.Printf("  CPU per call: caller sidecar %s + server sidecar %s = %s = %.2f× the floor's %s, %.2f× the chain floor's %s (issue 16: ≤ 65 µs)\n",
		us(u.caller/n), us(u.server/n), us(both), both/floorCPU, us(floorCPU), both/chainCPU, us(chainCPU))
	fmt.Printf("  CPU per call elsewhere: component %s, load client %s, broker and Redis %s; sidecars + component %.3f ms, all %.3f ms\n",
		us(u.component/n), us(u.client/n), us(u.backend/n), (u.caller+u.server+u.component)/n*1000, (u.caller+u.server+u.component+u.client+u.backend)/n*1000)
	fmt.Printf("  allocations per call: caller sidecar %.0f (%.1f KB), server sidecar %.0f (%.1f KB); GC cycles per 1,000 calls: %.1f, %.1f; GC CPU per call: %s, %s\n",
		u.callerAllocs.mallocs/n, u.callerAllocs.bytes/n/1024, u.serverAllocs.mallocs/n, u.serverAllocs.bytes/n/1024,
		u.callerAllocs.gcs/n*1000, u.serverAllocs.gcs/n*1000, us(u.callerAllocs.gcCPU/n), us(u.serverAllocs.gcCPU/n))
	// /proc/PID/io counts read and write calls only: the server sidecar's
	// peek for its component's answer (recvfrom, appclient's readiness)
	// replaced a read that returned EAGAIN and is not in the count.
	fmt.Printf("  read and write system calls per call (recvfrom not counted): caller sidecar %.1f, server sidecar %.1f; threads put to sleep per call: %.2f, %.2f\n",
		u.callerSys/n, u.serverSys/n, u.callerSleeps/n, u.serverSleeps/n)
	u.kafka.print(calls)
}

// sleeps is the count of voluntary context switches of every thread of
// process pid.
func sleeps(pid int) float64 {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var n float64
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, t.Name()))
		if err != nil {
			continue // the thread ended
		}
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "voluntary_ctxt_switches:"); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				n += f
			}
		}
	}
	return n
}

// syscalls is the count of read and write system calls process pid made.
func syscalls(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	var n float64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		if k == "syscr" || k == "syscw" {
			f, _ := strconv.ParseFloat(v, 64)
			n += f
		}
	}
	return n
}
