package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestClassOf(t *testing.T) {
	for _, tc := range []struct {
		status int
		want   string
	}{
		{0, "2xx"}, {200, "2xx"}, {202, "2xx"}, {302, "3xx"}, {404, "4xx"}, {408, "4xx"}, {500, "5xx"}, {503, "5xx"}, {NoResponse, "error"},
	} {
		if got := classNames[classOf(tc.status)]; got != tc.want {
			t.Errorf("classOf(%d) = %s, want %s", tc.status, got, tc.want)
		}
	}
}

// TestNilRecordsNothing: the mesh runs without metrics in one-shot
// commands and unit tests.
func TestNilRecordsNothing(t *testing.T) {
	var m *Metrics
	m.Sent(Sync, false, "s", 200, time.Millisecond)
	m.Served(Async, true, "A", 500)
	m.Held(false, "s", 1)
	m.HeldExpired(false, "s")
	m.UserCode("A", "/m", time.Millisecond)
	m.Redis(time.Millisecond)
	m.Produce(time.Millisecond, nil)
	m.Activated("A")
	m.EventDelivery(EventFailed)
	m.LeaseRenewals(2)
	m.Reconnect("redis")
}

// TestTargetsCapped: targets come from callers; past MaxTargets they
// share one series, "other".
func TestTargetsCapped(t *testing.T) {
	m := New("a")
	for i := range MaxTargets + 10 {
		m.Sent(Sync, false, "s"+strconv.Itoa(i), 200, 0)
	}
	if n := testutil.CollectAndCount(m.sent); n != MaxTargets+1 {
		t.Errorf("%d series, want %d", n, MaxTargets+1)
	}
	if v := testutil.ToFloat64(m.sent.WithLabelValues("sync", "service", Other, "2xx")); v != 10 {
		t.Errorf("other = %v, want 10", v)
	}
	// A known target keeps its own series after the cap.
	m.Sent(Sync, false, "s1", 200, 0)
	if v := testutil.ToFloat64(m.sent.WithLabelValues("sync", "service", "s1", "2xx")); v != 2 {
		t.Errorf("s1 = %v, want 2", v)
	}
}

// TestUserCodePaths: KAR's path label is "Type:/method" for an actor
// method and the path for a service.
func TestUserCodePaths(t *testing.T) {
	m := New("a")
	m.UserCode("Philosopher", "/eat", time.Millisecond)
	m.UserCode("Philosopher", "/eat", time.Millisecond)
	m.UserCode("", "/eat", time.Millisecond)
	for path, want := range map[string]uint64{"Philosopher:/eat": 2, "/eat": 1} {
		if got := histCount(t, m, "kar_user_code_invocation_durations_histogram_seconds", "path", path); got != want {
			t.Errorf("path %s: count %d, want %d", path, got, want)
		}
	}
}

func histCount(t *testing.T, m *Metrics, name, label, value string) uint64 {
	t.Helper()
	fams, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, s := range f.Metric {
			for _, l := range s.Label {
				if l.GetName() == label && l.GetValue() == value {
					return s.Histogram.GetSampleCount()
				}
			}
		}
	}
	return 0
}

// TestHotPathAllocatesNothing: recording a call of a known target costs
// no allocation.
func TestHotPathAllocatesNothing(t *testing.T) {
	m := New("a")
	record := func() {
		m.Sent(Sync, true, "Counter", 200, time.Millisecond)
		m.Served(TailCall, false, "svc", 500)
		m.UserCode("Counter", "/incr", time.Millisecond)
		m.UserCode("", "/svc/path", time.Millisecond)
		m.Produce(time.Millisecond, nil)
		m.Begin(true, "Counter").End(time.Millisecond)
	}
	record()
	if n := testing.AllocsPerRun(100, record); n != 0 {
		t.Errorf("%v allocations per call, want 0", n)
	}
}

// TestHandlerUncompressedWithLiveHeap: /metrics answers a client that
// offers gzip (as Prometheus does) uncompressed, and gives the live heap.
func TestHandlerUncompressedWithLiveHeap(t *testing.T) {
	srv := httptest.NewServer(New("a").Handler())
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if enc := resp.Header.Get("Content-Encoding"); enc != "" {
		t.Errorf("Content-Encoding %q, want none", enc)
	}
	for _, name := range []string{"go_gc_heap_live_bytes ", "go_memstats_heap_inuse_bytes ", "go_cpu_classes_gc_total_cpu_seconds_total "} {
		if !strings.Contains(string(b), "\n"+name) {
			t.Errorf("no %s in /metrics", name)
		}
	}
	t.Logf("/metrics: %d bytes", len(b))
}
