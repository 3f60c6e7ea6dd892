package events

import (
	"context"
	"net/http"
	"reflect"
	"testing"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// TestTraceContextTravels: the publisher's traceparent and tracestate
// become the event's distributed tracing extension, cross Kafka in the
// record, and reach the DeliverFunc; an event with a trace context of its
// own keeps it.
func TestTraceContextTravels(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	const own = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		want   httpx.Fields
	}{
		{"plain body", http.Header{"Content-Type": {"application/json"}, "Traceparent": {tp}, "Tracestate": {"k=v"}}, `1`,
			httpx.Fields{"Traceparent", tp, "Tracestate", "k=v"}},
		{"binary CloudEvent", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"s"}, "Ce-Type": {"t"}, "Traceparent": {tp}}, `x`,
			httpx.Fields{"Traceparent", tp}},
		{"the event's own trace context stays", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"s"}, "Ce-Type": {"t"},
			"Ce-Traceparent": {own}, "Traceparent": {tp}}, `x`, httpx.Fields{"Traceparent", own}},
		{"no trace context", http.Header{"Content-Type": {"application/json"}}, `1`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := roundTrip(t, tc.header, tc.body)
			got := TraceContext(withTraceContext(context.Background(), p.ev))
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("trace context delivered: %v, want %v", got, tc.want)
			}
		})
	}
}
