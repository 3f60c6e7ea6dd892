package tracing

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// exporter sends spans to an OTLP/HTTP endpoint in OTLP's JSON encoding.
// It stands in for otlptracehttp, whose configuration package links all of
// gRPC into the sidecar (18 MB more binary): the JSON encoding is part of
// OTLP/HTTP and every collector's OTLP/HTTP receiver takes it.
type exporter struct {
	url     string
	headers http.Header
	client  *http.Client
}

// newExporter reads the OpenTelemetry exporter variables:
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the full URL) or
// OTEL_EXPORTER_OTLP_ENDPOINT (+ /v1/traces), OTEL_EXPORTER_OTLP_HEADERS
// and _TRACES_HEADERS (k=v,k2=v2, values URL-encoded), and
// OTEL_EXPORTER_OTLP_TIMEOUT and _TRACES_TIMEOUT (ms, default 10 s).
func newExporter() (*exporter, error) {
	u := os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
	if u == "" {
		u = strings.TrimRight(os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), "/") + "/v1/traces"
	}
	if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return nil, fmt.Errorf("OTLP endpoint %q is not an http(s) URL", u)
	}
	h := http.Header{"Content-Type": {"application/json"}}
	for _, name := range []string{"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"} {
		for kv := range strings.SplitSeq(os.Getenv(name), ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			if dv, err := url.QueryUnescape(strings.TrimSpace(v)); err == nil {
				v = dv
			}
			h.Set(strings.TrimSpace(k), v)
		}
	}
	timeout := 10 * time.Second
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"} {
		if ms, err := strconv.Atoi(os.Getenv(name)); err == nil && ms > 0 {
			timeout = time.Duration(ms) * time.Millisecond
		}
	}
	return &exporter{url: u, headers: h, client: &http.Client{Timeout: timeout}}, nil
}

// ExportSpans posts one batch of spans.
func (e *exporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	body, err := json.Marshal(encode(spans))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, e.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header = e.headers.Clone()
	resp, err := e.client.Do(req)
	if err != nil {
		return fmt.Errorf("export spans: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("export spans: the collector answered %s", resp.Status)
	}
	return nil
}

// Shutdown has nothing to release.
func (e *exporter) Shutdown(context.Context) error { return nil }

// OTLP's JSON encoding (opentelemetry-proto, ExportTraceServiceRequest):
// ids in hex, enums as numbers, 64-bit integers as strings.
type (
	otlpRequest struct {
		ResourceSpans []otlpResourceSpans `json:"resourceSpans"`
	}
	otlpResourceSpans struct {
		Resource   otlpResource     `json:"resource"`
		ScopeSpans []otlpScopeSpans `json:"scopeSpans"`
	}
	otlpResource struct {
		Attributes []otlpKeyValue `json:"attributes"`
	}
	otlpScopeSpans struct {
		Scope otlpScope  `json:"scope"`
		Spans []otlpSpan `json:"spans"`
	}
	otlpScope struct {
		Name    string `json:"name"`
		Version string `json:"version,omitempty"`
	}
	otlpSpan struct {
		TraceID      string         `json:"traceId"`
		SpanID       string         `json:"spanId"`
		ParentSpanID string         `json:"parentSpanId,omitempty"`
		TraceState   string         `json:"traceState,omitempty"`
		Name         string         `json:"name"`
		Kind         int            `json:"kind"`
		Start        string         `json:"startTimeUnixNano"`
		End          string         `json:"endTimeUnixNano"`
		Attributes   []otlpKeyValue `json:"attributes,omitempty"`
		Status       otlpStatus     `json:"status"`
	}
	otlpStatus struct {
		Code    int    `json:"code,omitempty"`
		Message string `json:"message,omitempty"`
	}
	otlpKeyValue struct {
		Key   string    `json:"key"`
		Value otlpValue `json:"value"`
	}
	otlpValue struct {
		String *string  `json:"stringValue,omitempty"`
		Int    *string  `json:"intValue,omitempty"`
		Bool   *bool    `json:"boolValue,omitempty"`
		Double *float64 `json:"doubleValue,omitempty"`
	}
)

// encode groups spans by resource and scope (one sidecar has one of each,
// but the encoding does not assume it).
func encode(spans []sdktrace.ReadOnlySpan) otlpRequest {
	var req otlpRequest
	index := map[*resource.Resource]int{}
	for _, s := range spans {
		ri, ok := index[s.Resource()]
		if !ok {
			ri = len(req.ResourceSpans)
			index[s.Resource()] = ri
			req.ResourceSpans = append(req.ResourceSpans, otlpResourceSpans{Resource: otlpResource{Attributes: attrs(s.Resource().Attributes())}})
		}
		rs := &req.ResourceSpans[ri]
		scope := otlpScope{Name: s.InstrumentationScope().Name, Version: s.InstrumentationScope().Version}
		si := -1
		for i := range rs.ScopeSpans {
			if rs.ScopeSpans[i].Scope == scope {
				si = i
			}
		}
		if si < 0 {
			si = len(rs.ScopeSpans)
			rs.ScopeSpans = append(rs.ScopeSpans, otlpScopeSpans{Scope: scope})
		}
		ss := &rs.ScopeSpans[si]
		sc := s.SpanContext()
		o := otlpSpan{
			TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(),
			TraceState: sc.TraceState().String(), Name: s.Name(), Kind: int(s.SpanKind()),
			Start: strconv.FormatInt(s.StartTime().UnixNano(), 10), End: strconv.FormatInt(s.EndTime().UnixNano(), 10),
			Attributes: attrs(s.Attributes()),
		}
		if p := s.Parent(); p.HasSpanID() {
			o.ParentSpanID = p.SpanID().String()
		}
		// The SDK's codes (Unset 0, Error 1, Ok 2) are not OTLP's (Unset 0, Ok 1, Error 2).
		switch s.Status().Code {
		case codes.Error:
			o.Status = otlpStatus{Code: 2, Message: s.Status().Description}
		case codes.Ok:
			o.Status = otlpStatus{Code: 1}
		}
		ss.Spans = append(ss.Spans, o)
	}
	return req
}

func attrs(kvs []attribute.KeyValue) []otlpKeyValue {
	out := make([]otlpKeyValue, 0, len(kvs))
	for _, kv := range kvs {
		var v otlpValue
		switch kv.Value.Type() {
		case attribute.BOOL:
			b := kv.Value.AsBool()
			v.Bool = &b
		case attribute.INT64:
			i := strconv.FormatInt(kv.Value.AsInt64(), 10)
			v.Int = &i
		case attribute.FLOAT64:
			f := kv.Value.AsFloat64()
			v.Double = &f
		default:
			s := kv.Value.Emit()
			v.String = &s
		}
		out = append(out, otlpKeyValue{Key: string(kv.Key), Value: v})
	}
	return out
}
