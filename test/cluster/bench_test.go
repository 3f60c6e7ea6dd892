package cluster_test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// BenchmarkActorStateShards: one Redis (one shard) against a Redis Cluster
// of three primaries, side by side in one run, on an actor-state-heavy
// load: 64 clients, each step an update of one of 10,000 actor instances
// (POST .../state: two keys and a sub-map entry in one transaction) and a
// read of its whole state (GET .../state), through a kar sidecar. It
// reports steps/s and the p50 and p99 of a step. The sub-benchmarks
// alternate in three rounds, so that both see the same machine:
//
//	go test -run '^$' -bench ActorStateShards -benchtime 4000x ./test/cluster
func BenchmarkActorStateShards(b *testing.B) {
	testenv.KarBin(b)
	backend := testenv.Backend(b)
	rc := testenv.StartRedisCluster(b, 3)
	one := benchSidecar(b, "bench-one", append(backend.Env(), "KAR_LEASE_TTL=3s"), backend.RedisPID())
	three := benchSidecar(b, "bench-three", append(append(backend.Env(), rc.Env()...), "KAR_LEASE_TTL=3s"), rc.PIDs()...)
	// Rounds alternate the two, so that both see the same machine.
	for round := range 3 {
		for _, t := range []benchTarget{one, three} {
			b.Run(fmt.Sprintf("shards=%d/round=%d", len(t.redis), round), func(b *testing.B) { stateLoad(b, t) })
		}
	}
}

// benchTarget is a sidecar under load and the Redis processes it uses.
type benchTarget struct {
	base    string
	sidecar int
	redis   []int
}

func benchSidecar(b *testing.B, app string, env []string, redis ...int) benchTarget {
	port := testenv.FreePort(b)
	p := testenv.Start(b, app, env, "", testenv.KarBin(b), "run", "-app", app, "-runtime_port", strconv.Itoa(port))
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.WaitHealthy(b, base, 30*time.Second)
	return benchTarget{base: base, sidecar: p.PID(), redis: redis}
}

// cpuTime is the CPU time the threads of pids have run (the first field of
// /proc/PID/task/TID/schedstat, in ns).
func cpuTime(b *testing.B, pids ...int) time.Duration {
	var total time.Duration
	for _, pid := range pids {
		stats, err := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/schedstat")
		if err != nil || len(stats) == 0 {
			b.Fatalf("no threads of %d: %v", pid, err)
		}
		for _, f := range stats {
			raw, err := os.ReadFile(f)
			if err != nil {
				continue // a thread that ended
			}
			if ns, err := strconv.ParseInt(strings.Fields(string(raw))[0], 10, 64); err == nil {
				total += time.Duration(ns)
			}
		}
	}
	return total
}

// stateLoad runs b.N steps from 64 clients against the sidecar of t, and
// reports steps/s, the p50 and p99 of a step and the CPU time per step of
// the sidecar and of Redis (all its processes).
func stateLoad(b *testing.B, t benchTarget) {
	base := t.base
	const clients, instances = 64, 10000
	tr := &http.Transport{MaxIdleConnsPerHost: clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var next atomic.Int64
	var failed atomic.Int64
	lat := make([][]time.Duration, clients)
	var wg sync.WaitGroup
	sidecarCPU, redisCPU := cpuTime(b, t.sidecar), cpuTime(b, t.redis...)
	b.ResetTimer()
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(c), 7))
			for next.Add(1) <= int64(b.N) {
				id := strconv.Itoa(r.IntN(instances))
				url := base + "/kar/v1/actor/Bench/" + id + "/state"
				body := fmt.Sprintf(`{"updates":{"n":%d,"at":"%s"},"submapupdates":{"seen":{"k%d":true}}}`, r.IntN(1000), time.Now().Format(time.RFC3339Nano), r.IntN(8))
				t0 := time.Now()
				if !benchDo(hc, "POST", url, body) || !benchDo(hc, "GET", url, "") {
					failed.Add(1)
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	sidecarCPU, redisCPU = cpuTime(b, t.sidecar)-sidecarCPU, cpuTime(b, t.redis...)-redisCPU
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d steps failed", n, b.N)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "steps/s")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(sidecarCPU.Microseconds())/float64(b.N), "sidecar-cpu-µs/step")
	b.ReportMetric(float64(redisCPU.Microseconds())/float64(b.N), "redis-cpu-µs/step")
}

func benchDo(hc *http.Client, method, url, body string) bool {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return false
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var buf [4096]byte
	for {
		if _, err := resp.Body.Read(buf[:]); err != nil {
			break
		}
	}
	return resp.StatusCode < 300
}
