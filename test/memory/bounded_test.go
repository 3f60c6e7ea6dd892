// Package memory_test checks, on a real sidecar, that what it keeps in
// memory does not grow with the actor ids and request ids it has seen.
package memory_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestBoundedByActiveWork drives three equal rounds of calls through one
// sidecar that hosts an actor type and a service, every actor call to an id
// never used before (so every one activates an instance) and every call
// with a new request id. After each round the sidecar's idle instances are
// collected (-actor_collector_interval 1s), and then its live heap
// (go_gc_heap_live_bytes, as of the last collection) must be about where
// it was after the first round, though it has seen 4000 ids more: the
// instances, placements, pending calls and whatever else is kept per id
// are dropped. The calls come in batches of the same active work, each
// collected before the next: the maps keep the size of the largest, so
// the peak must not depend on the machine's speed. Before collected
// instances left the map, the sidecar kept 270 bytes per actor id: 0.54 MB
// more after every round.
func TestBoundedByActiveWork(t *testing.T) {
	b := testenv.Backend(t)
	app := newComponent(t)
	port := testenv.FreePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	env := append(b.Env(), "KAR_APP=memtest")
	testenv.Start(t, "sidecar", env, "", testenv.KarBin(t), "run", "-service", "echo", "-actors", "Counter",
		"-app_port", strconv.Itoa(app), "-runtime_port", strconv.Itoa(port), "-actor_collector_interval", "1s")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	testenv.Eventually(t, 60*time.Second, func() bool { return call(c, base+"/kar/v1/service/echo/call/x") == nil },
		"the sidecar to serve its own service")

	rdb := redis.NewClient(&redis.Options{Addr: b.RedisAddr()})
	defer rdb.Close()
	redisConns := func() int { return sidecarConns(t, rdb) }

	var next atomic.Int64 // the next actor id
	// round calls ids new actor ids and makes as many service calls, in
	// batches; after each batch, every instance is collected before the
	// next batch starts. So each batch peaks at the same active work,
	// however fast the machine runs it: the maps grow to that peak in the
	// first batch and keep it, and what grows later is kept per id.
	round := func(ids int) (live float64, conns int) {
		t.Helper()
		start := time.Now()
		for range ids / activeWork {
			load(t, c, 16, 2*activeWork, func(i int) string {
				if i%2 == 0 {
					return base + "/kar/v1/service/echo/call/x"
				}
				return fmt.Sprintf("%s/kar/v1/actor/Counter/a%d/call/incr", base, next.Add(1))
			})
			testenv.Eventually(t, 60*time.Second, func() bool {
				m := scrape(t, c, base)
				return m[`kar_actor_activations_total{actor_type="Counter",app="memtest"}`] ==
					m[`kar_actor_deactivations_total{actor_type="Counter",app="memtest"}`]
			}, "every instance to be deactivated")
		}
		// Service calls alone now: enough garbage for a few collections,
		// so that the live heap is measured after the ids were dropped.
		m0 := scrape(t, c, base)["go_gc_duration_seconds_count"]
		testenv.Eventually(t, 60*time.Second, func() bool {
			load(t, c, 16, 400, func(int) string { return base + "/kar/v1/service/echo/call/x" })
			return scrape(t, c, base)["go_gc_duration_seconds_count"] >= m0+2
		}, "two collections")
		live, conns = scrape(t, c, base)["go_gc_heap_live_bytes"], redisConns()
		t.Logf("%d actor ids (and as many service calls) in %s; then live heap %.2f MB, %d connections to Redis",
			ids, time.Since(start).Round(time.Millisecond), live/1e6, conns)
		return live, conns
	}
	// The growth over the two later rounds, 4000 new actor ids: a per-id
	// leak adds up (the instances' 270 bytes each once made it a
	// megabyte). go-redis keeps the connections that a batch's peak of
	// activations opened (up to its pool size), each with its buffers on
	// the heap (connHeap): a round that reached a higher peak keeps more,
	// whatever the ids.
	lives, conns := make([]float64, 3), make([]int, 3)
	for i := range lives {
		lives[i], conns[i] = round(2000)
	}
	growth := lives[2] - lives[0] - float64(max(0, conns[2]-conns[0]))*connHeap
	if growth > 0.35e6 {
		t.Errorf("live heap grew by %.2f MB (less what more connections to Redis hold) over two rounds of 2000 new actor ids each: something is kept per id", growth/1e6)
	}
}

// TestRedisConnectionsBounded sends bursts of 64 calls at once, each to an
// actor id never used before, so that each claims its instance's placement
// in Redis at the same moment, and then counts the sidecar's connections to
// Redis. go-redis keeps every connection a burst made it open, for as long
// as the sidecar lives: with a pool of 64 a sidecar kept 40-64 of them
// after such a burst, each a client Redis serves and about 12 KB of the
// sidecar's heap (a quarter of its live heap under the bench's actor load,
// and twice the collections), and 200 such sidecars would pass Redis's
// default limit of 10,000 clients. The bound is go-redis's two pools' (for
// commands and for pipelines) and the one connection of the sidecar's
// notices (store.Notices).
func TestRedisConnectionsBounded(t *testing.T) {
	b := testenv.Backend(t)
	app := newComponent(t)
	port := testenv.FreePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.Start(t, "sidecar", append(b.Env(), "KAR_APP=conntest"), "", testenv.KarBin(t), "run", "-actors", "Counter",
		"-app_port", strconv.Itoa(app), "-runtime_port", strconv.Itoa(port))
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	testenv.Eventually(t, 60*time.Second, func() bool { return call(c, base+"/kar/v1/actor/Counter/warm/call/incr") == nil },
		"the sidecar to serve its actor type")
	rdb := redis.NewClient(&redis.Options{Addr: b.RedisAddr()})
	defer rdb.Close()

	var next atomic.Int64
	for range 5 {
		load(t, c, 64, 64, func(int) string {
			return fmt.Sprintf("%s/kar/v1/actor/Counter/b%d/call/incr", base, next.Add(1))
		})
	}
	if n, bound := sidecarConns(t, rdb), store.PoolSize+store.PipelinePoolSize+1; n > bound {
		list, _ := rdb.ClientList(context.Background()).Result()
		t.Errorf("after 5 bursts of 64 new actor instances the sidecar holds %d connections to Redis; the bound is %d (its pools and its notices):\n%s", n, bound, list)
	} else {
		t.Logf("%d connections to Redis after 5 bursts of 64 new actor instances (bound %d)", n, bound)
	}
}

// TestActiveInstanceFootprint activates 5000 actor instances and keeps
// them active (the collector waits 10 minutes), and checks what each holds
// in the sidecar's live heap: its entry in the map of instances hosted here
// and what it needs to be found. The sidecar also kept each in its cache of
// placements, a second key with its own copies of the type and id, though
// an instance active here is found in the map of instances: 333-351 bytes
// per active instance, where 228-232 are left without it. A loaded server
// sidecar holds a thousand or more at once (the bench's soak).
func TestActiveInstanceFootprint(t *testing.T) {
	b := testenv.Backend(t)
	app := newComponent(t)
	port := testenv.FreePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.Start(t, "sidecar", append(b.Env(), "KAR_APP=footprint"), "", testenv.KarBin(t), "run", "-service", "echo", "-actors", "Counter",
		"-app_port", strconv.Itoa(app), "-runtime_port", strconv.Itoa(port), "-actor_collector_interval", "10m")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	testenv.Eventually(t, 60*time.Second, func() bool { return call(c, base+"/kar/v1/service/echo/call/x") == nil },
		"the sidecar to serve its own service")
	// live is the live heap after two collections made by service calls
	// alone (they keep nothing).
	live := func() float64 {
		t.Helper()
		m0 := scrape(t, c, base)["go_gc_duration_seconds_count"]
		testenv.Eventually(t, 60*time.Second, func() bool {
			load(t, c, 16, 400, func(int) string { return base + "/kar/v1/service/echo/call/x" })
			return scrape(t, c, base)["go_gc_duration_seconds_count"] >= m0+2
		}, "two collections")
		return scrape(t, c, base)["go_gc_heap_live_bytes"]
	}
	// Warm up with instances of their own, so that the baseline has the
	// pools and buffers that activations use.
	load(t, c, 16, 500, func(i int) string { return fmt.Sprintf("%s/kar/v1/actor/Counter/warm%d/call/incr", base, i) })
	before := live()
	const n = 5000
	load(t, c, 16, n, func(i int) string { return fmt.Sprintf("%s/kar/v1/actor/Counter/a%d/call/incr", base, i) })
	after := live()
	m := scrape(t, c, base)
	if active := m[`kar_actor_activations_total{actor_type="Counter",app="footprint"}`] - m[`kar_actor_deactivations_total{actor_type="Counter",app="footprint"}`]; active < n {
		t.Fatalf("only %.0f instances active; the test needs %d", active, n)
	}
	per := (after - before) / n
	t.Logf("live heap %.2f MB -> %.2f MB with %d more active instances: %.0f bytes each", before/1e6, after/1e6, n, per)
	if per > perInstance {
		t.Errorf("each active instance holds %.0f bytes of the sidecar's live heap; at most %d expected", per, perInstance)
	}
}

// perInstance bounds the live heap one active instance holds: its struct
// (type, id, lock, session, waiters, last use: 128 bytes), its copies of
// the type and id, and its entry in the map of instances, with the room a
// map keeps to grow.
const perInstance = 280

// sidecarConns counts the connections to Redis of the test's one sidecar:
// every client Redis serves but rdb's own.
func sidecarConns(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(list, "\n") - 1
}

// activeWork is how many new actor ids a batch of TestBoundedByActiveWork
// calls before its instances are collected.
const activeWork = 1000

// connHeap is about what one pooled connection to Redis keeps on the
// sidecar's heap: its 4 KiB read and write buffers (adapter/store) and
// go-redis's and net's structures.
const connHeap = 12e3

// load makes n calls, inflight at a time, to url(i) for i in [0, n); a
// failed call fails the test.
func load(t *testing.T, c *http.Client, inflight, n int, url func(i int) string) {
	t.Helper()
	var i atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inflight)
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := int(i.Add(1) - 1); k < n; k = int(i.Add(1) - 1) {
				if err := call(c, url(k)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func call(c *http.Client, url string) error {
	resp, err := c.Post(url, "application/json", strings.NewReader(`[1]`))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d", url, resp.StatusCode)
	}
	return nil
}

// scrape reads the sidecar's /metrics: the value of each series by its
// name and labels as written.
func scrape(t *testing.T, c *http.Client, base string) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("/metrics: %v", err)
	}
	defer resp.Body.Close()
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}

// newComponent serves the sidecar's component in the test: the service
// echo answers every call, and the actor type Counter activates, runs its
// method and deactivates. It returns the port.
func newComponent(t *testing.T) int {
	mux := http.NewServeMux()
	mux.HandleFunc("/kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusCreated)
		}
	})
	mux.HandleFunc("POST /kar/impl/v1/actor/{type}/{id}/{method}", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/kar+json")
		io.WriteString(w, `{"value":1}`)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"ok":true}`)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().(*net.TCPAddr).Port
}
