package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// byActor groups deliveries by actor id, in delivery order.
func byActor(t testing.TB, ds []delivery) map[string][]int {
	t.Helper()
	out := map[string][]int{}
	for _, d := range ds {
		out[d.actorID] = append(out[d.actorID], numbers(t, []delivery{d})[0])
	}
	return out
}

// groupSequence merges the deliveries to the given actors in delivery
// order: a group delivers one event at a time, so this is the group's
// sequence.
func groupSequence(t testing.TB, ds []delivery, actors ...string) []int {
	t.Helper()
	var out []int
	for _, d := range ds {
		if slices.Contains(actors, d.actorID) {
			out = append(out, numbers(t, []delivery{d})[0])
		}
	}
	return out
}

// TestGroupsShareEvents: subscriptions of one topic with the same group
// share its events, each event to exactly one of them, round robin, in
// order; different groups each get every event; without a group a
// subscription's id is its group (as in KAR: two actors subscribing with
// kar-sdk's default id share). A member removed mid-stream loses the group
// nothing, and gets nothing published after its DELETE returned; a member
// joining takes the group's position (its oldestOffset does not replay).
func TestGroupsShareEvents(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	for _, sub := range []struct{ actor, id, body string }{
		{"w0", "s", `{"path":"/m","topic":"orders","group":"workers","contentType":"application/json"}`},
		{"w1", "s", `{"path":"/m","topic":"orders","group":"workers","contentType":"application/json"}`},
		{"w2", "job", `{"path":"/m","topic":"orders","group":"workers","contentType":"application/json"}`},
		{"audit", "s", `{"path":"/m","topic":"orders","group":"auditors","contentType":"application/json"}`},
		{"k0", "orders", `{"path":"/m","topic":"orders","contentType":"application/json"}`},
		{"k1", "orders", `{"path":"/m","topic":"orders","contentType":"application/json"}`},
		{"solo", "solo", `{"path":"/m","topic":"orders","contentType":"application/json"}`},
	} {
		subscribe(t, base, sub.actor, sub.id, sub.body)
	}
	run(t, s)
	const n = 30
	publishN(t, base, "orders", 0, n)
	// workers 30 + auditors 30 + orders 30 + solo 30
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 4*n }, "every group delivered")
	ds := rec.snapshot()
	got := byActor(t, ds)
	for _, tc := range []struct {
		name   string
		actors []string
		each   int
	}{
		{"workers", []string{"w0", "w1", "w2"}, n / 3},
		{"auditors", []string{"audit"}, n},
		{"default group: the subscription id", []string{"k0", "k1"}, n / 2},
		{"a group of one", []string{"solo"}, n},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if seq := groupSequence(t, ds, tc.actors...); !slices.Equal(seq, seq0(n)) {
				t.Errorf("group delivered %v, want each of 0..%d once, in order", seq, n-1)
			}
			for _, a := range tc.actors {
				if len(got[a]) != tc.each {
					t.Errorf("member %s got %v, want %d events (round robin)", a, got[a], tc.each)
				}
			}
		})
	}

	// w1 leaves: the others share everything from now on.
	expect(t, "DELETE", base+"/kar/v1/actor/Sub/w1/events/s", "", "", 200, "1")
	publishN(t, base, "orders", n, 2*n)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 8*n }, "every group delivered after a member left")
	// w3 joins the workers asking for the oldest offset: it starts where
	// the group is.
	subscribe(t, base, "w3", "s", `{"path":"/m","topic":"orders","group":"workers","contentType":"application/json","oldestOffset":true}`)
	publishN(t, base, "orders", 2*n, 3*n)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 12*n }, "every group delivered after a member joined")
	ds = rec.snapshot()
	if seq := groupSequence(t, ds, "w0", "w1", "w2", "w3"); !slices.Equal(seq, seq0(3*n)) {
		t.Errorf("workers delivered %v, want each of 0..%d once, in order", seq, 3*n-1)
	}
	got = byActor(t, ds)
	if len(got["w1"]) != n/3 {
		t.Errorf("w1 got %v after it left", got["w1"])
	}
	if w3 := got["w3"]; len(w3) == 0 || w3[0] < 2*n {
		t.Errorf("w3 got %v, want some of %d..%d only", w3, 2*n, 3*n-1)
	}
	if seq := groupSequence(t, ds, "audit"); !slices.Equal(seq, seq0(3*n)) {
		t.Errorf("auditors delivered %v", seq)
	}

	// The last member gone, the group's position goes with it.
	for _, a := range []string{"w0", "w3"} {
		expect(t, "DELETE", base+"/kar/v1/actor/Sub/"+a+"/events/s", "", "", 200, "1")
	}
	expect(t, "DELETE", base+"/kar/v1/actor/Sub/w2/events", "", "", 200, "1")
	if n, _ := w.rdb.Exists(context.Background(), groupKey(s.keys, unitOf("orders", "workers")), groupLeaseKey(s.keys, unitOf("orders", "workers"))).Result(); n != 0 {
		t.Errorf("the workers group's keys are left in Redis after its last member left")
	}
}

func seq0(n int) []int { return seq(0, n) }

// TestGroupMemberFailing: a member whose actor always fails does not hold
// the group back nor send its events to the dead letters while another
// member takes them: each failed attempt goes to the next member.
func TestGroupMemberFailing(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	var failed atomic.Int64
	deliver := func(ctx context.Context, typ, id, path, ct string, body []byte) error {
		if id == "broken" {
			failed.Add(1)
			return errors.New("the host of this actor is gone (test)")
		}
		return rec.deliverAs("sc1")(ctx, typ, id, path, ct, body)
	}
	s, logs := w.service(t, "sc1", deliver, func(o *Options) { o.MaxAttempts = 2 })
	base := serve(t, s).URL
	for _, a := range []string{"broken", "ok"} {
		subscribe(t, base, a, "s", `{"path":"/m","topic":"jobs","group":"g","contentType":"application/json"}`)
	}
	run(t, s)
	const n = 20
	publishN(t, base, "jobs", 0, n)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= n }, "every event delivered")
	if nums := numbers(t, rec.snapshot()); !slices.Equal(nums, seq0(n)) {
		t.Errorf("delivered %v, want 0..%d once each in order", nums, n-1)
	}
	if failed.Load() == 0 {
		t.Errorf("the broken member was never tried")
	}
	if strings.Contains(logs.String(), "dead-letter topic") {
		t.Errorf("an event went to the dead letters though a member could take it")
	}
}

// TestGroupHandOver: a group's position is the group's, not a runner's:
// when the runner delivering it stops, another goes on where it was.
func TestGroupHandOver(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	a, _ := w.service(t, "A", rec.deliverAs("A"))
	b, _ := w.service(t, "B", rec.deliverAs("B"))
	base := serve(t, a).URL
	for _, id := range []string{"m0", "m1"} {
		subscribe(t, base, id, "s", `{"path":"/m","topic":"relay","group":"g","contentType":"application/json"}`)
	}
	stopA := run(t, a)
	const n = 20
	publishN(t, base, "relay", 0, n)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= n }, "A delivers")
	stopA()
	run(t, b)
	publishN(t, base, "relay", n, 2*n)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 2*n }, "B goes on")
	ds := rec.snapshot()
	checkAtLeastOnceInOrder(t, groupSequence(t, ds, "m0", "m1"), 2*n)
	if last := ds[len(ds)-1]; last.by != "B" {
		t.Errorf("last event delivered by %s after A stopped", last.by)
	}
}

// TestGroupMove: a subscription that changes group (PUT again) leaves the
// old one, which goes on for its other members, and joins the new one.
func TestGroupMove(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	for _, id := range []string{"x", "y"} {
		subscribe(t, base, id, "s", `{"path":"/m","topic":"moves","group":"old","contentType":"application/json"}`)
	}
	run(t, s)
	publishN(t, base, "moves", 0, 10)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 10 }, "the old group delivered")
	st, body := do(t, "PUT", base+"/kar/v1/actor/Sub/y/events/s", "application/json", `{"path":"/m","topic":"moves","group":"new","contentType":"application/json"}`)
	if st != http.StatusOK {
		t.Fatalf("move: %d %s", st, body)
	}
	publishN(t, base, "moves", 10, 20)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 30 }, "both groups deliver")
	got := byActor(t, rec.snapshot())
	if x := got["x"]; len(x) != 5+10 || x[len(x)-1] != 19 {
		t.Errorf("x (alone in the old group now) got %v", x)
	}
	if y := got["y"]; len(y) != 5+10 || fmt.Sprint(y[5:]) != fmt.Sprint(seq(10, 20)) {
		t.Errorf("y (alone in the new group) got %v", y)
	}
}

// TestAdoptSubscriptionFromBeforeGroups: a subscription stored by kar
// before groups (its offsets under its own field) is adopted into its
// group and goes on from its own offsets: nothing replayed, nothing lost.
func TestAdoptSubscriptionFromBeforeGroups(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	publishN(t, base, "legacy", 0, 10)
	ctx := context.Background()
	sub := Subscription{Actor: Actor{Type: "Sub", ID: "old"}, ID: "s1", Path: "/m", Topic: "legacy", ContentType: "application/json"}
	raw, _ := json.Marshal(sub)
	w.rdb.HSet(ctx, s.keys.Subscriptions(), sub.field(), raw)
	w.rdb.HSet(ctx, legacyOffsetsKey(s.keys, sub.field()), "0", 6)
	run(t, s)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 4 }, "the adopted subscription delivers")
	publishN(t, base, "legacy", 10, 12)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 6 }, "and goes on")
	if nums := numbers(t, rec.snapshot()); !slices.Equal(nums, seq(6, 12)) {
		t.Errorf("delivered %v, want 6..11", nums)
	}
	if n, _ := w.rdb.Exists(ctx, legacyOffsetsKey(s.keys, sub.field())).Result(); n != 0 {
		t.Errorf("the offsets from before groups are left in Redis")
	}
}
