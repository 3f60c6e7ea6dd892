package tracing

import (
	"context"
	"strings"
	"testing"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// TestOffWithoutEndpoint: with no OTLP endpoint configured there is no
// tracer, and a nil one costs nothing per call.
func TestOffWithoutEndpoint(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	tr, err := New(context.Background(), "a", "s", "dev")
	if tr != nil || err != nil {
		t.Fatalf("New without an endpoint = %v, %v; want nil, nil", tr, err)
	}
	h := httpx.Fields{"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
	if n := testing.AllocsPerRun(100, func() {
		s := tr.Start(h, &h, Call, "service", "svc", "POST", "/x")
		s.Redelivery(true)
		s.End(200, nil)
	}); n != 0 {
		t.Errorf("%v allocations per call with tracing off, want 0", n)
	}
	if got := h.Get("Traceparent"); !strings.HasSuffix(got, "00f067aa0ba902b7-01") {
		t.Errorf("traceparent changed with tracing off: %q", got)
	}
}

// TestStartContinuesTheTrace: the span continues the trace of from and
// its context replaces the traceparent in to, leaving from as it was.
func TestStartContinuesTheTrace(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:1")
	tr, err := New(context.Background(), "a", "s", "dev")
	if err != nil || tr == nil {
		t.Fatalf("New: %v, %v", tr, err)
	}
	defer tr.Shutdown(context.Background())
	const in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	from := httpx.Fields{"Traceparent", in}
	var to httpx.Fields
	s := tr.Start(from, &to, Serve, "actor", "A", "POST", "/m")
	s.End(200, nil)
	out := to.Get("Traceparent")
	if !strings.HasPrefix(out, "00-4bf92f3577b34da6a3ce929d0e0e4736-") || strings.Contains(out, "00f067aa0ba902b7") {
		t.Errorf("traceparent for the next hop = %q, want the same trace, a new span", out)
	}
	if from.Get("Traceparent") != in {
		t.Errorf("from changed: %q", from.Get("Traceparent"))
	}
}

func TestExporterConfig(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		endpoint, traces, hdr string
		wantURL               string
		wantHeader            string
		wantErr               bool
	}{
		{"base endpoint", "http://c:4318/", "", "", "http://c:4318/v1/traces", "", false},
		{"traces endpoint wins", "http://c:4318", "https://t/x", "", "https://t/x", "", false},
		{"headers, URL-encoded", "http://c:4318", "", "api-key=a%20b, other=1", "http://c:4318/v1/traces", "a b", false},
		{"not a URL", "c:4318", "", "", "", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", tc.endpoint)
			t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", tc.traces)
			t.Setenv("OTEL_EXPORTER_OTLP_HEADERS", tc.hdr)
			e, err := newExporter()
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if e.url != tc.wantURL || e.headers.Get("Api-Key") != tc.wantHeader {
				t.Errorf("url %q header %q, want %q %q", e.url, e.headers.Get("Api-Key"), tc.wantURL, tc.wantHeader)
			}
		})
	}
}
