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

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestBoundedByActiveWork drives two equal rounds of calls through one
// sidecar that hosts an actor type and a service, every actor call to an id
// never used before (so every one activates an instance) and every call
// with a new request id. After each round the sidecar's idle instances are
// collected (-actor_collector_interval 1s), and then its live heap
// (go_gc_heap_live_bytes, as of the last collection) must be where it was
// after the first round, though it has seen twice the ids: the instances,
// placements, pending calls and whatever else is kept per id are dropped.
// (The first round also grows the maps to the active work's peak, which
// they keep.) Before collected instances left the map, the sidecar kept
// 270 bytes per actor id: 0.54 MB more after the second round.
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

	var next atomic.Int64 // the next actor id
	round := func(actors int) (live float64) {
		t.Helper()
		start := time.Now()
		load(t, c, 16, actors, func(i int) string {
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
		// Service calls alone now: enough garbage for a few collections,
		// so that the live heap is measured after the ids were dropped.
		m0 := scrape(t, c, base)["go_gc_duration_seconds_count"]
		testenv.Eventually(t, 60*time.Second, func() bool {
			load(t, c, 16, 400, func(int) string { return base + "/kar/v1/service/echo/call/x" })
			return scrape(t, c, base)["go_gc_duration_seconds_count"] >= m0+2
		}, "two collections")
		live = scrape(t, c, base)["go_gc_heap_live_bytes"]
		t.Logf("%d actor ids (and as many service calls) in %s; then live heap %.2f MB", actors/2, time.Since(start).Round(time.Millisecond), live/1e6)
		return live
	}
	first := round(4000)
	second := round(4000)
	if second-first > 0.3e6 {
		t.Errorf("live heap grew by %.2f MB from %d to %d actor ids seen: something is kept per id", (second-first)/1e6, 2000, 4000)
	}
}

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
