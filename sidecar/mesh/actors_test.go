package mesh

import (
	"context"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

func TestContinuation(t *testing.T) {
	env := &Envelope{ID: "abc-1", From: "abc", FromPart: 3, ActorType: "A", ActorID: "1", Session: "s1", Deadline: 99}
	cases := []struct {
		name string
		resp *Envelope
		want *Envelope // nil: not a tail call
	}{
		{"plain value", &Envelope{Status: 200, Body: []byte(`{"value": 1}`)}, nil},
		{"error status", &Envelope{Status: 500, Body: []byte(`{"tailCall": true}`)}, nil},
		{"no target", &Envelope{Status: 200, Body: []byte(`{"tailCall": true, "value": {"path": "/x"}}`)}, nil},
		{"same actor keeps session", &Envelope{Status: 200, Body: []byte(`{"tailCall":true,"value":{"actorType":"A","actorId":"1","path":"/next","payload":"[1,2]"}}`)},
			&Envelope{ID: "abc-1.1", ActorType: "A", ActorID: "1", Path: "/next", Session: "s1", Body: []byte("[1,2]")}},
		{"other actor, releaseLock", &Envelope{Status: 200, Body: []byte(`{"tailCall":true,"value":{"actorType":"B","actorId":"2","path":"m","payload":"[]","releaseLock":"true"}}`)},
			&Envelope{ID: "abc-1.1", ActorType: "B", ActorID: "2", Path: "/m", Session: "abc-1.1", Body: []byte("[]"), releaseLock: true}},
		{"service", &Envelope{Status: 200, Body: []byte(`{"tailCall":true,"value":{"serviceName":"s","path":"/p","payload":{"a":1},"method":"put"}}`)},
			&Envelope{ID: "abc-1.1", Service: "s", Path: "/p", Method: "PUT", Body: []byte(`{"a":1}`), ActorResult: true}},
		// kar-sdk's tailCall(svc, path, JSON.stringify(body)): the string's content is the body.
		{"service, string payload", &Envelope{Status: 200, Body: []byte(`{"tailCall":true,"value":{"serviceName":"s","path":"/p","payload":"{\"a\":1}","method":"POST"}}`)},
			&Envelope{ID: "abc-1.1", Service: "s", Path: "/p", Method: "POST", Body: []byte(`{"a":1}`), ActorResult: true}},
		{"service, no payload", &Envelope{Status: 200, Body: []byte(`{"tailCall":true,"value":{"serviceName":"s","path":"/p","method":"POST"}}`)},
			&Envelope{ID: "abc-1.1", Service: "s", Path: "/p", Method: "POST", ActorResult: true}},
	}
	for _, tc := range cases {
		got := continuation(env, tc.resp, 0)
		if (got == nil) != (tc.want == nil) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		if got == nil {
			continue
		}
		w := tc.want
		if got.ID != w.ID || got.ActorType != w.ActorType || got.ActorID != w.ActorID || got.Service != w.Service || got.Path != w.Path ||
			got.Session != w.Session || string(got.Body) != string(w.Body) || got.releaseLock != w.releaseLock || (w.Method != "" && got.Method != w.Method) ||
			got.ActorResult != w.ActorResult {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, w)
		}
		if got.From != "abc" || got.FromPart != 3 || got.Deadline != 99 || got.Kind != KindRequest {
			t.Errorf("%s: the caller's return address was not kept: %+v", tc.name, got)
		}
	}
}

func TestStepIDs(t *testing.T) {
	for _, c := range []struct{ id, root, next string }{
		{"s-1", "s-1", "s-1.1"}, {"s-1.1", "s-1", "s-1.2"}, {"s-1.9", "s-1", "s-1.10"},
	} {
		if rootID(c.id) != c.root {
			t.Errorf("rootID(%s) = %s", c.id, rootID(c.id))
		}
		if n := rootID(c.id) + "." + stepSuffix(c.id, 0); n != c.next {
			t.Errorf("next of %s = %s, want %s", c.id, n, c.next)
		}
	}
	if isStep("s-1") || !isStep("s-1.3") {
		t.Error("isStep")
	}
}

// TestInstanceLock: one session at a time, nested entry for the holding
// session, waiters served first come first served, and a bounded wait.
func TestInstanceLock(t *testing.T) {
	in := &instance{}
	ctx := context.Background()
	if err := in.acquire(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if err := in.acquire(ctx, "s1"); err != nil { // re-entrant
		t.Fatal(err)
	}
	order := make(chan string, 2)
	for _, s := range []string{"s2", "s3"} {
		go func() {
			if in.acquire(ctx, s) == nil {
				order <- s
				time.Sleep(time.Millisecond)
				in.release()
			}
		}()
		waitFor(t, func() bool {
			in.mu.Lock()
			defer in.mu.Unlock()
			return len(in.waiters) >= map[string]int{"s2": 1, "s3": 2}[s]
		})
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := in.acquire(short, "s4"); err == nil {
		t.Fatal("s4 entered a held instance")
	}
	in.release()
	select {
	case s := <-order:
		t.Fatalf("%s entered while s1 still held the instance", s)
	default:
	}
	in.release()
	if a, b := <-order, <-order; a != "s2" || b != "s3" {
		t.Errorf("order %s, %s; want s2, s3", a, b)
	}
	waitFor(t, in.idle)
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestPoolReusesWorkers(t *testing.T) {
	p := newPool(time.Second)
	var ran atomic.Int32
	done := make(chan struct{}, 100)
	for i := 0; i < 100; i++ {
		p.Go(task{fn: func() { ran.Add(1); done <- struct{}{} }})
		<-done // sequential: one worker serves them all
	}
	if ran.Load() != 100 {
		t.Fatalf("ran %d", ran.Load())
	}
	// Blocking tasks never wait for a free worker.
	release := make(chan struct{})
	for i := 0; i < 10; i++ {
		p.Go(task{fn: func() { <-release; done <- struct{}{} }})
	}
	close(release)
	for i := 0; i < 10; i++ {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a task waited for a busy worker")
		}
	}
}

func TestSweep(t *testing.T) {
	m := &Mesh{pending: map[string]call{}, promised: map[string]time.Time{}, placements: map[actorRef]string{}}
	now := time.Now()
	m.pending["old"], m.promised["old"] = call{ch: make(chan *Envelope, 1)}, now.Add(-2*PromiseTTL)
	m.pending["new"], m.promised["new"] = call{ch: make(chan *Envelope, 1)}, now
	m.pending["call"] = call{ch: make(chan *Envelope, 1)} // a synchronous call: its caller forgets it
	for i := 0; i <= placementCacheMax; i++ {
		m.placements[actorKey("T", strconv.Itoa(i))] = "x"
	}
	m.sweep(now)
	if _, ok := m.pending["old"]; ok {
		t.Error("a stale promise was kept")
	}
	if _, ok := m.pending["new"]; !ok {
		t.Error("a fresh promise was dropped")
	}
	if _, ok := m.pending["call"]; !ok {
		t.Error("a synchronous call was dropped")
	}
	if len(m.placements) != 0 {
		t.Errorf("placement cache kept %d entries past its bound", len(m.placements))
	}
}

// TestNewMakesUsableTables: every table a mesh writes to exists before Join.
func TestNewMakesUsableTables(t *testing.T) {
	m, err := New(Options{App: "a"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.pending == nil || m.promised == nil || m.instances == nil || m.placements == nil || m.running == nil || m.owned == nil {
		t.Fatalf("New left a table nil: %+v", m)
	}
	m.sweep(time.Now())
}

// -missing_component_timeout 0 holds a request for ever, as KAR does; a
// request's own deadline still ends its wait.
func TestHeldForEverWithoutTimeout(t *testing.T) {
	m := &Mesh{log: slog.New(slog.DiscardHandler)}
	m.hold(&Envelope{ID: "a", Async: true}, func() { t.Error("held request without a deadline expired") })
	expired := false
	m.hold(&Envelope{ID: "b", Async: true, Deadline: time.Now().Add(-time.Second).UnixMilli()}, func() { expired = true })
	m.expireHeld(context.Background())
	if len(m.held) != 1 || m.held[0].env.ID != "a" || !expired {
		t.Errorf("held %d, expired %v: want a held, b expired", len(m.held), expired)
	}
}

// A nested call's parent is the innermost request running in its session;
// a call with no session has one only when a single request runs here.
func TestParentOf(t *testing.T) {
	m := &Mesh{sessions: map[string][]string{}, serviceRuns: map[string]int{}}
	steps := []struct {
		do      func()
		session string
		want    string
	}{
		{func() {}, "s1", ""},
		{func() { m.enter("s1", "a") }, "s1", "a"},
		{func() {}, "", "a"},
		{func() { m.enter("s1", "b") }, "s1", "b"}, // re-entrant call of the same session
		{func() { m.enterService("c") }, "", ""},   // two sessions run: no guess
		{func() {}, "s2", ""},
		{func() { m.leave("s1", "b") }, "s1", "a"},
		{func() { m.leaveService("c") }, "", "a"},
		{func() { m.leave("s1", "a") }, "", ""},
		{func() { m.enterService("d") }, "", "d"}, // a service request alone
		{func() { m.enterService("d") }, "", "d"}, // and a redelivery of it
		{func() { m.leaveService("d") }, "", "d"}, // one run of it goes on
		{func() { m.enterService("e") }, "", ""},  // two run: no guess
		{func() { m.leaveService("d") }, "", "e"},
		{func() { m.leaveService("e") }, "", ""},
	}
	for i, s := range steps {
		s.do()
		if got := m.parentOf(s.session); got != s.want {
			t.Errorf("step %d: parentOf(%q) = %q, want %q", i, s.session, got, s.want)
		}
	}
	if len(m.sessions) != 0 || len(m.serviceRuns) != 0 {
		t.Errorf("sessions left: %v %v", m.sessions, m.serviceRuns)
	}
}
