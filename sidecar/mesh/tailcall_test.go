package mesh

import (
	"testing"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// TestServiceTailCalls: a service's answer is a tail call only with the
// actor protocol's media type, and the mark that the chain's caller wants
// an actor result carries over service steps.
func TestServiceTailCalls(t *testing.T) {
	tc := []byte(`{"tailCall":true,"value":{"serviceName":"s2","path":"/q","payload":"[1]","method":"POST"}}`)
	kar := httpx.Fields{"Content-Type", "application/kar+json; charset=utf-8"}
	plain := httpx.Fields{"Content-Type", "application/json"}
	cases := []struct {
		name      string
		env       *Envelope
		header    httpx.Fields
		want      bool // a continuation
		wantActor bool // its answer becomes an actor result
	}{
		{"plain JSON answer is data", &Envelope{ID: "x-1", Service: "s"}, plain, false, false},
		{"no media type is data", &Envelope{ID: "x-1", Service: "s"}, nil, false, false},
		{"kar+json answer continues", &Envelope{ID: "x-1", Service: "s"}, kar, true, false},
		{"after an actor's tail call", &Envelope{ID: "x-1.1", Service: "s", ActorResult: true}, kar, true, true},
		{"an actor's answer needs no media type", &Envelope{ID: "x-1", ActorType: "A", ActorID: "1"}, nil, true, true},
	}
	for _, c := range cases {
		next := continuation(c.env, &Envelope{Status: 200, Header: c.header, Body: tc}, 0)
		if (next != nil) != c.want {
			t.Errorf("%s: continuation %+v", c.name, next)
			continue
		}
		if next != nil && (next.ActorResult != c.wantActor || string(next.Body) != "[1]") {
			t.Errorf("%s: ActorResult %v body %q", c.name, next.ActorResult, next.Body)
		}
	}
}

func TestActorResult(t *testing.T) {
	step := &Envelope{ID: "x-1.1", Service: "s", ActorResult: true}
	cases := []struct {
		name string
		env  *Envelope
		resp *Envelope
		want string // body; the content type is application/kar+json when it changes
	}{
		{"JSON value", step, &Envelope{Status: 200, Body: []byte(`{"a": [1, 2]}`)}, `{"value":{"a":[1,2]}}`},
		{"text", step, &Envelope{Status: 200, Body: []byte(`plain words`)}, `{"value":"plain words"}`},
		{"empty 200", step, &Envelope{Status: 200}, `{"value":""}`},
		{"no content passes", step, &Envelope{Status: 204}, ``},
		{"error status passes", step, &Envelope{Status: 404, Body: []byte(`nope`)}, `nope`},
		{"mesh error passes", step, &Envelope{Status: 200, Error: true, Body: []byte(`x`)}, `x`},
		{"service caller", &Envelope{ID: "x-1", Service: "s"}, &Envelope{Status: 200, Body: []byte(`{"a":1}`)}, `{"a":1}`},
	}
	for _, c := range cases {
		got := actorResult(c.env, c.resp)
		if string(got.Body) != c.want || got.Status != c.resp.Status {
			t.Errorf("%s: %d %s, want %d %s", c.name, got.Status, got.Body, c.resp.Status, c.want)
		}
		if got != c.resp && got.Header.Get("Content-Type") != "application/kar+json" {
			t.Errorf("%s: content type %q", c.name, got.Header.Get("Content-Type"))
		}
	}
}

// TestTailCallKeepsTheTrace: each step of a chain carries the W3C trace
// context of the request that began it, to an actor or to a service.
func TestTailCallKeepsTheTrace(t *testing.T) {
	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for name, body := range map[string]string{
		"to an actor":  `{"tailCall":true,"value":{"actorType":"A","actorId":"2","path":"m","payload":"[]"}}`,
		"to a service": `{"tailCall":true,"value":{"serviceName":"s2","path":"/q","payload":"{}"}}`,
	} {
		env := &Envelope{ID: "x-1", ActorType: "A", ActorID: "1", Header: httpx.Fields{"Traceparent", tp, "Tracestate", "k=v"}}
		next := continuation(env, &Envelope{Status: 200, Body: []byte(body)}, 0)
		if next == nil {
			t.Fatalf("%s: no continuation", name)
		}
		if next.Header.Get("Traceparent") != tp || next.Header.Get("Tracestate") != "k=v" {
			t.Errorf("%s: step headers %v, want the trace context", name, next.Header)
		}
	}
}
