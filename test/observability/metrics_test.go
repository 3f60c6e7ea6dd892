// Package observability_test scrapes the /metrics of real kar sidecars
// (real redis-server, the Kafka-protocol broker) after a known workload.
package observability_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/mesh"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// component is the in-test component of the serving sidecar: a service
// with /ok, /fail (answers 500), /crash (drops the connection without
// answering: a poison request), /slow (answers once release is closed)
// and /wait (answers after 20 ms), and the actor type Counter.
func component(t *testing.T, release <-chan struct{}) int {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) { time.Sleep(20 * time.Millisecond) })
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "failed", 500) })
	mux.HandleFunc("/crash", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			c.Close()
		}
	})
	mux.HandleFunc("GET /kar/impl/v1/actor/Counter/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("DELETE /kar/impl/v1/actor/Counter/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) })
	mux.HandleFunc("POST /kar/impl/v1/actor/Counter/{id}/incr", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/kar+json")
		io.WriteString(w, `{"value":1}`)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// startSidecar starts `kar run` without a command (its component is in the
// test) and returns its runtime port once it is healthy.
func startSidecar(t *testing.T, b *devenv.Backend, name string, args ...string) int {
	t.Helper()
	port := testenv.FreePort(t)
	argv := append([]string{testenv.KarBin(t), "run", "-runtime_port", strconv.Itoa(port), "-v", "info"}, args...)
	testenv.Start(t, name, append(b.Env(), "KAR_LEASE_TTL=1s"), "", argv...)
	waitHealthy(t, port, name)
	return port
}

// waitMember waits until a sidecar of app announces the service and actor type.
func waitMember(t *testing.T, b *devenv.Backend, app, svc, actor string) {
	t.Helper()
	ctx := context.Background()
	rdb, err := store.Connect(ctx, config.Backend{RedisHost: b.RedisHost(), RedisPort: b.RedisPort()})
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	defer rdb.Close()
	testenv.Eventually(t, 30*time.Second, func() bool {
		ms, err := mesh.LoadMembers(ctx, rdb, store.NewKeys(app))
		if err != nil {
			return false
		}
		for _, m := range ms {
			if slices.Contains(m.Services, svc) && slices.Contains(m.Actors, actor) {
				return true
			}
		}
		return false
	}, "a sidecar of %s serving %s and %s", app, svc, actor)
}

func call(t *testing.T, port int, method, path, pragma string, body string) int {
	t.Helper()
	req, _ := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", port, path), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if pragma != "" {
		req.Header.Set("Pragma", pragma)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// scrape reads a sidecar's /metrics.
func scrape(t *testing.T, port int) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

// value is the value of the series of family name whose labels include
// want (a histogram's count), or -1 when there is none.
func value(fams map[string]*dto.MetricFamily, name string, want ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			found := false
			for _, l := range m.Label {
				if l.GetName() == want[i] && l.GetValue() == want[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// expect is one series and the value it must reach.
type expect struct {
	name   string
	labels []string
	want   float64
}

// waitValues waits until every expected series has its value (the
// served side counts after answering, so a scrape right after the
// caller's last answer may be early).
func waitValues(t *testing.T, port int, what string, exps []expect) {
	t.Helper()
	var fams map[string]*dto.MetricFamily
	ok := func() bool {
		fams = scrape(t, port)
		for _, e := range exps {
			if value(fams, e.name, e.labels...) != e.want {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(15 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			for _, e := range exps {
				if got := value(fams, e.name, e.labels...); got != e.want {
					t.Errorf("%s: %s%v = %v, want %v", what, e.name, e.labels, got, e.want)
				}
			}
			t.FailNow()
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestMetricsCountTheWorkload runs a known workload from one sidecar to
// another and checks both sidecars' counters and histograms, KAR's names
// and the mesh's: N calls show as N, errors where they were provoked.
func TestMetricsCountTheWorkload(t *testing.T) {
	b := testenv.Backend(t)
	const app = "obs"
	appPort := component(t, nil)
	server := startSidecar(t, b, "server", "-app", app, "-service", "svc", "-actors", "Counter",
		"-app_port", strconv.Itoa(appPort), "-delivery_attempts", "2")
	caller := startSidecar(t, b, "caller", "-app", app, "-missing_component_timeout", "0")
	waitMember(t, b, app, "svc", "Counter")

	const okCalls, failCalls, actorCalls, tells = 5, 2, 3, 2
	for _, c := range []struct {
		n            int
		path, pragma string
		body         string
		want         int
	}{
		{okCalls, "/kar/v1/service/svc/call/ok", "", "{}", 200},
		{failCalls, "/kar/v1/service/svc/call/fail", "", "{}", 500},
		{actorCalls, "/kar/v1/actor/Counter/c1/call/incr", "", "[]", 200},
		{tells, "/kar/v1/service/svc/call/ok", "async", "{}", 202},
		// A poison request: the component drops it twice
		// (-delivery_attempts 2), then the caller gets a 500.
		{1, "/kar/v1/service/svc/call/crash", "", "{}", 500},
		// A request for a service nobody serves is held by the caller's
		// sidecar (it reads the partition the request waits on).
		{1, "/kar/v1/service/nobody/call/x", "async", "{}", 202},
	} {
		for range c.n {
			if s := call(t, caller, "POST", c.path, c.pragma, c.body); s != c.want {
				t.Fatalf("POST %s (Pragma %q): %d, want %d", c.path, c.pragma, s, c.want)
			}
		}
	}

	sent := func(kind, typ, target, class string, n float64) expect {
		return expect{"kar_requests_sent_total", []string{"app", app, "kind", kind, "target_type", typ, "target", target, "status_class", class}, n}
	}
	waitValues(t, caller, "caller", []expect{
		sent("sync", "service", "svc", "2xx", okCalls),
		sent("sync", "service", "svc", "5xx", failCalls+1),
		sent("sync", "actor", "Counter", "2xx", actorCalls),
		sent("async", "service", "svc", "2xx", tells),
		sent("async", "service", "nobody", "2xx", 1),
		{"kar_request_duration_seconds", []string{"target_type", "service", "target", "svc"}, okCalls + failCalls + 1},
		{"kar_request_duration_seconds", []string{"target_type", "actor", "target", "Counter"}, actorCalls},
		{"kar_held_requests", []string{"target_type", "service", "target", "nobody"}, 1},
		{"kar_held_requests_total", []string{"target_type", "service", "target", "nobody"}, 1},
	})

	served := func(kind, typ, target, class string, n float64) expect {
		return expect{"kar_requests_served_total", []string{"kind", kind, "target_type", typ, "target", target, "status_class", class}, n}
	}
	const user = "kar_user_code_invocation_durations_histogram_seconds"
	waitValues(t, server, "server", []expect{
		// KAR's names: every call to the component, by KAR's path label;
		// the poison request was delivered twice.
		{user, []string{"path", "/ok"}, okCalls + tells},
		{user, []string{"path", "/fail"}, failCalls},
		{user, []string{"path", "/crash"}, 2},
		{user, []string{"path", "Counter:/incr"}, actorCalls},
		// The mesh's.
		served("sync", "service", "svc", "2xx", okCalls),
		served("sync", "service", "svc", "5xx", failCalls+1),
		served("async", "service", "svc", "2xx", tells),
		served("sync", "actor", "Counter", "2xx", actorCalls),
		{"kar_actor_activations_total", []string{"actor_type", "Counter"}, 1},
		{"kar_requests_poisoned_total", nil, 1},
	})

	fams := scrape(t, server)
	if n := value(fams, "kar_redis_request_durations_histogram_seconds"); n <= 0 {
		t.Errorf("kar_redis_request_durations_histogram_seconds count = %v, want > 0", n)
	}
	if n := value(fams, "kar_kafka_produce_duration_seconds"); n < okCalls+failCalls+actorCalls {
		t.Errorf("kar_kafka_produce_duration_seconds count = %v, want at least one produce per answer", n)
	}
	// Leases are renewed every quarter lease (here 250 ms).
	testenv.Eventually(t, 10*time.Second, func() bool {
		return value(scrape(t, server), "kar_lease_renewals_total") > 0
	}, "kar_lease_renewals_total > 0")
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "kar_actors_active_reminders_gauge", "kar_actors_cancelled_reminders_gauge"} {
		if fams[name] == nil {
			t.Errorf("%s missing from /metrics", name)
		}
	}
}
