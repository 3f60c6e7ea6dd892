package observability_test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// receiver is an OTLP/HTTP collector stand-in: it decodes the spans the
// sidecars export (OTLP's JSON encoding: ids in hex, enums as numbers).
type receiver struct {
	mu    sync.Mutex
	spans []otlpSpan
}

type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Kind         int    `json:"kind"`
	Start        string `json:"startTimeUnixNano"`
	Attributes   []struct {
		Key   string `json:"key"`
		Value struct {
			String string `json:"stringValue"`
		} `json:"value"`
	} `json:"attributes"`
}

// OTLP's span kinds.
const (
	kindServer = 2
	kindClient = 3
)

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ResourceSpans []struct {
			Resource struct {
				Attributes []struct {
					Key string `json:"key"`
				} `json:"attributes"`
			} `json:"resource"`
			ScopeSpans []struct {
				Spans []otlpSpan `json:"spans"`
			} `json:"scopeSpans"`
		} `json:"resourceSpans"`
	}
	if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "not an OTLP/HTTP JSON export", 400)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		http.Error(w, err.Error(), 400)
		return
	}
	rc.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			rc.spans = append(rc.spans, ss.Spans...)
		}
	}
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, "{}")
}

// span finds the exported span named name in trace, or nil.
func (rc *receiver) span(trace, name string) *otlpSpan {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, s := range rc.spans {
		if s.TraceID == trace && s.Name == name {
			return &rc.spans[i]
		}
	}
	return nil
}

// TestTraceAcrossTwoSidecars: a call whose component request carries a
// W3C traceparent continues that trace through the caller's sidecar,
// across Kafka (in the request's envelope), through the server's sidecar
// into the serving component's request: one trace, with the caller's span
// the child of the component's and the server's span the child of the
// caller's.
func TestTraceAcrossTwoSidecars(t *testing.T) {
	b := testenv.Backend(t)
	rc := &receiver{}
	collector := httptest.NewServer(rc)
	t.Cleanup(collector.Close)
	otel := append(b.Env(), "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100")

	// The component records the traceparent each request brings it.
	var mu sync.Mutex
	got := map[string]string{}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.URL.Path] = r.Header.Get("Traceparent")
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	comp := httptest.NewServer(mux)
	t.Cleanup(comp.Close)
	compPort := comp.Listener.Addr().(*net.TCPAddr).Port

	const app = "obstrace"
	server := testenv.FreePort(t)
	testenv.Start(t, "server", append(otel, "KAR_LEASE_TTL=1s"), "", testenv.KarBin(t), "run", "-app", app, "-service", "svc",
		"-actors", "Counter", "-app_port", strconv.Itoa(compPort), "-runtime_port", strconv.Itoa(server), "-v", "info")
	caller := testenv.FreePort(t)
	testenv.Start(t, "caller", append(otel, "KAR_LEASE_TTL=1s"), "", testenv.KarBin(t), "run", "-app", app,
		"-runtime_port", strconv.Itoa(caller), "-v", "info")
	waitHealthy(t, server, "server")
	waitHealthy(t, caller, "caller")
	waitMember(t, b, app, "svc", "Counter")

	const traceID, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	if s, body := tracedPost(t, caller, "/kar/v1/service/svc/call/traced", "00-"+traceID+"-"+parent+"-01", "", "{}"); s != 200 {
		t.Fatalf("traced call: %d %s", s, body)
	}

	var call, serve *otlpSpan
	testenv.Eventually(t, 15*time.Second, func() bool {
		call, serve = rc.span(traceID, "call service svc"), rc.span(traceID, "serve service svc")
		return call != nil && serve != nil
	}, "both sidecars' spans of the trace exported")
	if call.ParentSpanID != parent {
		t.Errorf("caller's span: parent %s, want the component's span %s", call.ParentSpanID, parent)
	}
	if serve.ParentSpanID != call.SpanID {
		t.Errorf("server's span: parent %s, want the caller's span %s", serve.ParentSpanID, call.SpanID)
	}
	if call.Kind != kindClient || serve.Kind != kindServer {
		t.Errorf("kinds: caller %v, server %v; want client (3) and server (2)", call.Kind, serve.Kind)
	}
	if call.Start == "" || call.Start == "0" {
		t.Errorf("caller's span has no start time: %+v", call)
	}
	mu.Lock()
	tp := got["/traced"]
	mu.Unlock()
	want := "00-" + traceID + "-" + serve.SpanID + "-01"
	if tp != want {
		t.Errorf("the component got traceparent %q, want %q (the server sidecar's span)", tp, want)
	}
}

func waitHealthy(t *testing.T, port int, name string) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/kar/v1/system/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "%s healthy", name)
}

// tracedPost sends a request with a W3C traceparent and returns the status
// and body.
func tracedPost(t *testing.T, port int, path, traceparent, pragma, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://127.0.0.1:"+strconv.Itoa(port)+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Traceparent", traceparent)
	if pragma != "" {
		req.Header.Set("Pragma", pragma)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTraceEventAndAwait: an event published with a traceparent is
// delivered in the publisher's trace (CloudEvents' distributed tracing
// extension): the delivery's call span is the child of the publisher's
// span, the actor's serve span the child of that; and awaiting a promise
// has a span of its own in the awaiting component's trace.
func TestTraceEventAndAwait(t *testing.T) {
	b := testenv.Backend(t)
	rc := &receiver{}
	collector := httptest.NewServer(rc)
	t.Cleanup(collector.Close)
	otel := append(b.Env(), "OTEL_EXPORTER_OTLP_ENDPOINT="+collector.URL, "OTEL_BSP_SCHEDULE_DELAY=100", "KAR_LEASE_TTL=1s")
	appPort := component(t, nil)
	const app = "obstrace2"
	port := testenv.FreePort(t)
	testenv.Start(t, "sidecar", otel, "", testenv.KarBin(t), "run", "-app", app, "-service", "svc", "-actors", "Counter",
		"-app_port", strconv.Itoa(appPort), "-runtime_port", strconv.Itoa(port), "-v", "info")
	waitHealthy(t, port, "sidecar")
	waitMember(t, b, app, "svc", "Counter")

	req, _ := http.NewRequest("PUT", "http://127.0.0.1:"+strconv.Itoa(port)+"/kar/v1/actor/Counter/c1/events/s1",
		strings.NewReader(`{"path": "/incr", "topic": "traced"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		t.Fatalf("subscribe: %d", resp.StatusCode)
	}
	const eventTrace, publisher = "5bf92f3577b34da6a3ce929d0e0e4736", "10f067aa0ba902b7"
	// Published until delivered: the subscription may start reading after
	// the first publish.
	var call, serve *otlpSpan
	testenv.Eventually(t, 30*time.Second, func() bool {
		if s, body := tracedPost(t, port, "/kar/v1/event/traced/publish", "00-"+eventTrace+"-"+publisher+"-01", "", `{"n": 1}`); s != 200 {
			t.Fatalf("publish: %d %s", s, body)
		}
		call, serve = rc.span(eventTrace, "call actor Counter"), rc.span(eventTrace, "serve actor Counter")
		return call != nil && serve != nil
	}, "the event's delivery spans in the publisher's trace")
	if call.ParentSpanID != publisher {
		t.Errorf("delivery span: parent %s, want the publisher's span %s", call.ParentSpanID, publisher)
	}
	if serve.ParentSpanID != call.SpanID {
		t.Errorf("actor's serve span: parent %s, want the delivery span %s", serve.ParentSpanID, call.SpanID)
	}

	const awaitTrace, awaiter = "6bf92f3577b34da6a3ce929d0e0e4736", "20f067aa0ba902b7"
	s, id := tracedPost(t, port, "/kar/v1/service/svc/call/ok", "00-"+awaitTrace+"-"+awaiter+"-01", "promise", "{}")
	if s != 202 {
		t.Fatalf("promise: %d %s", s, id)
	}
	if s, body := tracedPost(t, port, "/kar/v1/await", "00-"+awaitTrace+"-"+awaiter+"-01", "", id); s != 200 || body != "ok" {
		t.Fatalf("await: %d %s", s, body)
	}
	var await *otlpSpan
	testenv.Eventually(t, 15*time.Second, func() bool {
		await = rc.span(awaitTrace, "await promise")
		return await != nil && rc.span(awaitTrace, "send service svc") != nil
	}, "the promise's send span and the await span in the component's trace")
	if await.ParentSpanID != awaiter {
		t.Errorf("await span: parent %s, want the awaiting component's span %s", await.ParentSpanID, awaiter)
	}
	found := false
	for _, a := range await.Attributes {
		found = found || (a.Key == "kar.request_id" && a.Value.String == id)
	}
	if !found {
		t.Errorf("await span attributes %+v: want kar.request_id %s", await.Attributes, id)
	}
}
