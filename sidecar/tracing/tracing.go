// Package tracing makes a sidecar's OpenTelemetry spans, exported over
// OTLP/HTTP in its JSON encoding (otlp.go), and carries the W3C trace context (traceparent, tracestate)
// from a component's request, through the mesh (in the request's envelope
// headers, so across Kafka), to the serving component's request.
//
// Tracing is off unless OTEL_EXPORTER_OTLP_ENDPOINT (or
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set: New then returns nil, and
// every method of a nil *Tracer returns at once, allocating nothing. The
// rest is configured the OpenTelemetry way, from the environment:
// OTEL_TRACES_SAMPLER and its argument, OTEL_SERVICE_NAME,
// OTEL_BSP_SCHEDULE_DELAY (read by the SDK), OTEL_EXPORTER_OTLP_HEADERS and
// _TIMEOUT (read by the exporter).
package tracing

import (
	"context"
	"fmt"
	"net/http"
	"net/textproto"
	"os"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// Tracer makes one sidecar's spans (nil: tracing is off).
type Tracer struct {
	tp   *sdktrace.TracerProvider
	t    trace.Tracer
	prop propagation.TextMapPropagator
	app  string
}

// Enabled tells whether the environment asks for traces.
func Enabled() bool {
	return os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// New starts the exporter when the environment asks for traces, else
// returns nil. sidecar names this sidecar in its spans.
func New(_ context.Context, app, sidecar, version string) (*Tracer, error) {
	if !Enabled() {
		return nil, nil
	}
	exp, err := newExporter()
	if err != nil {
		return nil, err
	}
	attrs := []attribute.KeyValue{attribute.String("kar.app", app), attribute.String("kar.sidecar", sidecar), attribute.String("service.version", version)}
	if os.Getenv("OTEL_SERVICE_NAME") == "" {
		attrs = append(attrs, attribute.String("service.name", "kar"))
	}
	res, err := resource.Merge(resource.Default(), resource.NewSchemaless(attrs...))
	if err != nil {
		return nil, fmt.Errorf("trace resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	return &Tracer{
		tp:   tp,
		t:    tp.Tracer("github.com/kar-runtime/kar/sidecar"),
		prop: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}),
		app:  app,
	}, nil
}

// Shutdown exports the spans not yet exported and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.tp.Shutdown(ctx)
}

// Span is a span being made; its zero value (tracing off) does nothing.
type Span struct{ s trace.Span }

// Kinds of span.
const (
	// Call: a caller's sidecar sends a request and waits for its answer;
	// Send: it sends a request nobody waits for (async, promise,
	// reminder); Serve: a sidecar delivers a request to its component,
	// whose answer is awaited; Deliver: one nobody awaits; Await: a
	// component waits for the answer of a promise it made.
	Call = iota
	Send
	Serve
	Deliver
	Await
)

var spanKinds = [...]trace.SpanKind{trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindServer, trace.SpanKindConsumer, trace.SpanKindInternal}
var spanVerbs = [...]string{"call", "send", "serve", "deliver", "await"}

// Start begins a span of kind for a request to target ("service" or
// "actor" targetType) continuing the trace context in from (the
// component's request, or the envelope's headers; none: a new trace), and
// writes the span's context into *to for the next hop, replacing what it
// held. *to must be the caller's own: it is changed in place.
func (t *Tracer) Start(from httpx.Fields, to *httpx.Fields, kind int, targetType, target, method, path string) Span {
	if t == nil {
		return Span{}
	}
	ctx := context.Background()
	if len(from) > 0 {
		ctx = t.prop.Extract(ctx, &fieldsCarrier{from})
	}
	name := spanVerbs[kind] + " " + targetType
	if target != "" {
		name += " " + target
	}
	_, s := t.t.Start(ctx, name, trace.WithSpanKind(spanKinds[kind]),
		trace.WithAttributes(
			attribute.String("kar.app", t.app),
			attribute.String("kar.target_type", targetType),
			attribute.String("kar.target", target),
			attribute.String("http.request.method", method),
			attribute.String("url.path", path),
		))
	// A carrier of its own, so that to does not escape: with tracing
	// off, Start costs no allocation.
	c := &fieldsCarrier{*to}
	t.prop.Inject(trace.ContextWithSpan(context.Background(), s), c)
	*to = c.f
	return Span{s}
}

// fieldsCarrier lets the propagators read and write header fields, under
// their canonical names as http.Header's carrier does.
type fieldsCarrier struct{ f httpx.Fields }

func (c *fieldsCarrier) Get(key string) string {
	return c.f.Get(textproto.CanonicalMIMEHeaderKey(key))
}

func (c *fieldsCarrier) Set(key, value string) {
	c.f.Set(textproto.CanonicalMIMEHeaderKey(key), value)
}

func (c *fieldsCarrier) Keys() []string {
	keys := make([]string, 0, c.f.Len())
	for i := 0; i < len(c.f); i += 2 {
		keys = append(keys, c.f[i])
	}
	return keys
}

// SetAttribute adds a string attribute to the span (a promise's request
// id on its await span: attributes of spans may be ids, labels of metrics
// may not).
func (s Span) SetAttribute(key, value string) {
	if s.s != nil {
		s.s.SetAttributes(attribute.String(key, value))
	}
}

// Redelivery marks a request that may have run before (redelivered after
// its host failed, or passed on by another sidecar).
func (s Span) Redelivery(yes bool) {
	if s.s != nil && yes {
		s.s.SetAttributes(attribute.Bool("kar.redelivery", true))
	}
}

// End ends the span with the status of the answer (NoStatus for none;
// err, if any, for why there was none).
func (s Span) End(status int, err error) {
	if s.s == nil {
		return
	}
	if status > 0 {
		s.s.SetAttributes(attribute.Int("http.response.status_code", status))
	}
	switch {
	case err != nil:
		s.s.SetStatus(codes.Error, err.Error())
	case status >= 500:
		s.s.SetStatus(codes.Error, http.StatusText(status))
	}
	s.s.End()
}
