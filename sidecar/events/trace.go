package events

import (
	"context"
	"net/http"

	ce "github.com/cloudevents/sdk-go/v2/event"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// The CloudEvents distributed tracing extension's attributes: the W3C
// trace context of the event's publisher, which its deliveries continue.
const (
	extTraceparent = "traceparent"
	extTracestate  = "tracestate"
)

// addTraceContext gives an event its publisher's trace context, from the
// publishing request's traceparent and tracestate headers, unless the
// event carries one of its own already (a CloudEvent published with the
// extension set keeps it).
func addTraceContext(ev *ce.Event, h http.Header) {
	tp := h.Get("Traceparent")
	if tp == "" {
		return
	}
	if _, ok := ev.Extensions()[extTraceparent]; ok {
		return
	}
	if ev.Context.SetExtension(extTraceparent, tp) != nil {
		return // not a value CloudEvents takes: no trace rather than no event
	}
	if ts := h.Get("Tracestate"); ts != "" {
		_ = ev.Context.SetExtension(extTracestate, ts)
	}
}

type traceKey struct{}

// withTraceContext passes an event's trace context to the DeliverFunc, in
// ctx (read by TraceContext), when the event has one.
func withTraceContext(ctx context.Context, ev *ce.Event) context.Context {
	tp, ok := ev.Extensions()[extTraceparent].(string)
	if !ok || tp == "" {
		return ctx
	}
	h := httpx.Fields{"Traceparent", tp}
	if ts, ok := ev.Extensions()[extTracestate].(string); ok && ts != "" {
		h.Add("Tracestate", ts)
	}
	return context.WithValue(ctx, traceKey{}, h)
}

// TraceContext is the W3C trace context (traceparent, tracestate headers)
// of the event a DeliverFunc delivers, or nil when it has none: the
// delivery continues the publisher's trace.
func TraceContext(ctx context.Context) httpx.Fields {
	h, _ := ctx.Value(traceKey{}).(httpx.Fields)
	return h
}
