package events

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestDeliveryInOrderOneAtATime: a slow subscriber gets every event, in
// publication order, never two at once, as the JSON array [data].
func TestDeliveryInOrderOneAtATime(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{delay: func() time.Duration { return time.Duration(rand.IntN(15)) * time.Millisecond }, failFirst: 2}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	publishN(t, base, "t1", -3, 0) // before the subscription: not delivered
	subscribe(t, base, "a1", "s1", `{"path":"/onEvent","topic":"t1","contentType":"application/json"}`)
	run(t, s)
	const n = 40
	publishN(t, base, "t1", 0, n)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= n }, "%d deliveries", n)

	got := rec.snapshot()
	if nums := numbers(t, got); !slices.Equal(nums, seq(0, n)) {
		t.Fatalf("delivered %v, want 0..%d in order", nums, n-1)
	}
	if rec.overlaps != 0 {
		t.Errorf("%d deliveries overlapped another of the same subscription", rec.overlaps)
	}
	d := got[0]
	if d.actorType != "Sub" || d.actorID != "a1" || d.path != "/onEvent" || d.contentType != "application/json" || d.body != `[{"n":0}]` {
		t.Errorf("first delivery %+v", d)
	}
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

// TestDeliveryContentTypes: what the actor method receives for each kind
// of publication under each subscription content type.
func TestDeliveryContentTypes(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	for id, ct := range map[string]string{"default": "", "ce": ContentTypeCloudEvents, "json": "application/json", "text": "text/plain"} {
		body := `{"path":"/m","topic":"mixed"}`
		if ct != "" {
			body = fmt.Sprintf(`{"path":"/m","topic":"mixed","contentType":%q}`, ct)
		}
		subscribe(t, base, id, id, body) // ids of their own: each gets every event
	}
	run(t, s)
	pub := base + "/kar/v1/event/mixed/publish"
	// kar-sdk publishes a plain object (no Content-Type) ...
	expect(t, "POST", pub, "", `{"x":1}`, 200, "OK")
	// ... or a CloudEvent object (structured JSON, no Content-Type).
	expect(t, "POST", pub, "", `{"specversion":"1.0","id":"e2","source":"/src","type":"t.e","data":{"y":2}}`, 200, "OK")
	// Binary mode.
	st, body := do(t, "POST", pub, "text/plain", "hello", "Ce-Specversion", "1.0", "Ce-Id", "e3", "Ce-Source", "/src", "Ce-Type", "t.b")
	if st != 200 {
		t.Fatalf("binary publish: %d %s", st, body)
	}
	// A plain text body.
	expect(t, "POST", pub, "text/plain", "just text", 200, "OK")

	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 16 }, "16 deliveries")
	by := map[string][]string{}
	for _, d := range rec.snapshot() {
		by[d.actorID] = append(by[d.actorID], d.body)
	}
	ceOf := func(body string) map[string]any {
		var args []map[string]any
		if err := json.Unmarshal([]byte(body), &args); err != nil || len(args) != 1 {
			t.Fatalf("%q is not [cloudevent]: %v", body, err)
		}
		return args[0]
	}
	// default: as published.
	if d := by["default"]; d[0] != `[{"x":1}]` || d[3] != `["just text"]` {
		t.Errorf("default: plain bodies delivered as %q and %q", d[0], d[3])
	}
	if e := ceOf(by["default"][1]); e["id"] != "e2" || e["specversion"] != "1.0" || fmt.Sprint(e["data"]) != "map[y:2]" {
		t.Errorf("default: CloudEvent delivered as %v", e)
	}
	if e := ceOf(by["default"][2]); e["id"] != "e3" || e["data"] != "hello" || e["datacontenttype"] != "text/plain" {
		t.Errorf("default: binary CloudEvent delivered as %v", e)
	}
	// cloudevents+json: always the whole event.
	if e := ceOf(by["ce"][0]); e["type"] != EventType || e["source"] != Source(testApp) || e["datacontenttype"] != "application/json" ||
		fmt.Sprint(e["data"]) != "map[x:1]" || e["id"] == "" || e["time"] == nil {
		t.Errorf("ce: wrapped body delivered as %v", e)
	}
	if e := ceOf(by["ce"][3]); e["data"] != "just text" {
		t.Errorf("ce: text delivered as %v", e)
	}
	// application/json and text/plain: the data.
	for _, id := range []string{"json", "text"} {
		want := []string{`[{"x":1}]`, `[{"y":2}]`, `["hello"]`, `["just text"]`}
		if !slices.Equal(by[id], want) {
			t.Errorf("%s: delivered %q, want %q", id, by[id], want)
		}
	}
}

// TestRestartAtLeastOnce: a runner stopped mid-stream hands over to
// another; the rest is delivered from the committed offset, nothing lost.
func TestRestartAtLeastOnce(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{delay: func() time.Duration { return 10 * time.Millisecond }}
	a, _ := w.service(t, "A", rec.deliverAs("A"))
	base := serve(t, a).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"t1","contentType":"application/json"}`)
	stopA := run(t, a)
	const n = 30
	publishN(t, base, "t1", 0, n)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 8 }, "A delivers some")
	stopA()
	fromA := rec.count()
	if fromA >= n {
		t.Skip("A delivered everything before it was stopped; the machine is too fast for this test")
	}
	b, _ := w.service(t, "B", rec.deliverAs("B"))
	run(t, b)
	testenv.Eventually(t, 20*time.Second, func() bool {
		nums := numbers(t, rec.snapshot())
		return len(nums) > 0 && nums[len(nums)-1] == n-1
	}, "B delivers the rest")
	checkAtLeastOnceInOrder(t, numbers(t, rec.snapshot()), n)
	for _, d := range rec.snapshot()[fromA:] {
		if d.by != "B" {
			t.Fatalf("a delivery after A stopped was made by %s", d.by)
		}
	}
}

// checkAtLeastOnceInOrder: nums holds 0..n-1 in order, where an event may
// repeat right after itself (redelivered after a handover).
func checkAtLeastOnceInOrder(t *testing.T, nums []int, n int) {
	t.Helper()
	next := 0
	for i, v := range nums {
		switch {
		case v == next:
			next++
		case i > 0 && v == nums[i-1]:
		default:
			t.Fatalf("delivered %v: want 0..%d in order (repeats allowed only in place)", nums, n-1)
		}
	}
	if next != n {
		t.Fatalf("delivered %v: want 0..%d", nums, n-1)
	}
}

// TestCompetingRunners: two sidecars' runners share the subscriptions,
// each subscription delivered by one at a time, in order; when one stops,
// the other takes its subscriptions over.
func TestCompetingRunners(t *testing.T) {
	w := newWorld(t)
	const subs, n = 4, 25
	recs := make([]*recorder, subs)
	for i := range recs {
		recs[i] = &recorder{delay: func() time.Duration { return time.Duration(rand.IntN(5)) * time.Millisecond }}
	}
	route := func(by string) DeliverFunc {
		return func(ctx context.Context, typ, id, path, ct string, body []byte) error {
			var i int
			fmt.Sscanf(id, "a%d", &i)
			return recs[i].deliverAs(by)(ctx, typ, id, path, ct, body)
		}
	}
	a, _ := w.service(t, "A", route("A"))
	b, _ := w.service(t, "B", route("B"))
	base := serve(t, a).URL
	for i := range subs {
		subscribe(t, base, fmt.Sprintf("a%d", i), fmt.Sprintf("s%d", i), `{"path":"/m","topic":"shared","contentType":"application/json"}`)
	}
	stopA := run(t, a)
	run(t, b)
	publishN(t, base, "shared", 0, n)
	testenv.Eventually(t, 30*time.Second, func() bool {
		for _, r := range recs {
			if r.count() < n {
				return false
			}
		}
		return true
	}, "every subscription delivered")
	users := map[string]bool{}
	for i, r := range recs {
		if r.overlaps != 0 {
			t.Errorf("subscription %d: %d overlapping deliveries", i, r.overlaps)
		}
		checkAtLeastOnceInOrder(t, numbers(t, r.snapshot()), n)
		for _, d := range r.snapshot() {
			users[d.by] = true
		}
	}
	t.Logf("runners that delivered: %v", users)

	// A stops: B takes over A's subscriptions.
	stopA()
	publishN(t, base, "shared", n, 2*n)
	testenv.Eventually(t, 30*time.Second, func() bool {
		for _, r := range recs {
			nums := numbers(t, r.snapshot())
			if nums[len(nums)-1] != 2*n-1 {
				return false
			}
		}
		return true
	}, "B delivers everything after A stopped")
	for i, r := range recs {
		checkAtLeastOnceInOrder(t, numbers(t, r.snapshot()), 2*n)
		ds := r.snapshot()
		if last := ds[len(ds)-1]; last.by != "B" {
			t.Errorf("subscription %d: last event delivered by %s after A stopped", i, last.by)
		}
	}
}

// TestLeaseExpiry: a subscription leased by a sidecar that died (its lease
// is not renewed) is taken over once the lease expires, not before.
func TestLeaseExpiry(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "B", rec.deliverAs("B"))
	base := serve(t, s).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"t1","contentType":"application/json"}`)
	dead := 2 * time.Second
	if err := w.rdb.Set(context.Background(), groupLeaseKey(s.keys, unitOf("t1", "s1")), "dead-sidecar", dead).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	publishN(t, base, "t1", 0, 3)
	run(t, s)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() == 3 }, "delivery after the dead lease expired")
	if el := time.Since(start); el < dead-200*time.Millisecond {
		t.Errorf("delivered %v after a lease of %v was set: the live lease was not respected", el, dead)
	}
	if !slices.Equal(numbers(t, rec.snapshot()), []int{0, 1, 2}) {
		t.Errorf("delivered %v", numbers(t, rec.snapshot()))
	}
}

// TestPartitionedTopic: a topic of several partitions keeps the order of
// each partition key, and a subscription with oldestOffset reads what was
// published before it.
func TestPartitionedTopic(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	expect(t, "PUT", base+"/kar/v1/event/wide", "application/json", `{"numPartitions":3}`, 201, "")
	const keys, per = 4, 10
	for i := range per {
		for k := range keys {
			st, body := do(t, "POST", base+"/kar/v1/event/wide/publish", "application/json", fmt.Sprintf(`{"k":%d,"n":%d}`, k, i),
				"Ce-Specversion", "1.0", "Ce-Id", fmt.Sprintf("%d-%d", k, i), "Ce-Source", "/t", "Ce-Type", "t", "Ce-Partitionkey", fmt.Sprint(k))
			if st != 200 {
				t.Fatalf("publish: %d %s", st, body)
			}
		}
	}
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"wide","contentType":"application/json","oldestOffset":true}`)
	run(t, s)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= keys*per }, "all events")
	last := map[int]int{}
	for _, d := range rec.snapshot() {
		var args []struct{ K, N int }
		if err := json.Unmarshal([]byte(d.body), &args); err != nil {
			t.Fatal(err)
		}
		e := args[0]
		if prev, ok := last[e.K]; (ok && e.N != prev+1) || (!ok && e.N != 0) {
			t.Fatalf("key %d: event %d after %d", e.K, e.N, prev)
		}
		last[e.K] = e.N
	}
	if rec.overlaps != 0 {
		t.Errorf("%d overlapping deliveries across partitions", rec.overlaps)
	}
}

// TestCancelStopsDelivery: a cancelled subscription stops receiving; a
// re-created one starts at the newest events.
func TestCancelStopsDelivery(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"t1","contentType":"application/json"}`)
	run(t, s)
	publishN(t, base, "t1", 0, 3)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() == 3 }, "3 deliveries")
	expect(t, "DELETE", base+"/kar/v1/actor/Sub/a1/events/s1", "", "", 200, "1")
	publishN(t, base, "t1", 3, 6)
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"t1","contentType":"application/json"}`)
	publishN(t, base, "t1", 6, 8)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 5 }, "5 deliveries")
	if nums := numbers(t, rec.snapshot()); !slices.Equal(nums, []int{0, 1, 2, 6, 7}) {
		t.Errorf("delivered %v, want [0 1 2 6 7]", nums)
	}
}

// TestTopicGrows: partitions added to a topic under a running subscription
// are read too (from their start), nothing lost.
func TestTopicGrows(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"grow","contentType":"application/json"}`)
	run(t, s)
	publishN(t, base, "grow", 0, 2)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() == 2 }, "2 deliveries")
	if n, err := w.kc.GrowTopic(context.Background(), kafka.EventTopic("grow"), 3); err != nil || n != 3 {
		t.Fatalf("grow: %d, %v", n, err)
	}
	publishN(t, base, "grow", 2, 20) // round robin over 3 partitions
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 20 }, "20 deliveries")
	nums := numbers(t, rec.snapshot())
	slices.Sort(nums)
	if !slices.Equal(nums, seq(0, 20)) {
		t.Errorf("delivered %v, want each of 0..19 once", nums)
	}
}

// TestTopicDeletedAndRecreated: a subscription outlives its topic; when
// the topic comes back (a publish creates it) delivery resumes from its start.
func TestTopicDeletedAndRecreated(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, logs := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"phoenix","contentType":"application/json"}`)
	run(t, s)
	publishN(t, base, "phoenix", 0, 3)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() == 3 }, "3 deliveries")
	expect(t, "DELETE", base+"/kar/v1/event/phoenix", "", "", 200, "OK")
	kt := kafka.EventTopic("phoenix")
	testenv.Eventually(t, 10*time.Second, func() bool {
		w.kc.RefreshMetadata(kt)
		ps, err := w.kc.Partitions(kt)
		return err != nil || len(ps) == 0
	}, "topic deleted")
	publishN(t, base, "phoenix", 3, 5)
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 5 }, "delivery resumes on the new topic\n%s", logs)
	if nums := numbers(t, rec.snapshot()); !slices.Equal(nums, seq(0, 5)) {
		t.Errorf("delivered %v, want 0..4", nums)
	}
	// The committed offset (3) is past the new topic's end (2 records):
	// the runner says why it reads from the oldest.
	if !strings.Contains(logs.String(), "committed offset no longer in the topic") {
		t.Errorf("no warning about the committed offset out of range:\n%s", logs)
	}
}

// TestRunnersShareSubscriptions: live runners split the subscriptions
// between them rather than the quickest taking all.
func TestRunnersShareSubscriptions(t *testing.T) {
	w := newWorld(t)
	noop := func(context.Context, string, string, string, string, []byte) error { return nil }
	a, _ := w.service(t, "A", noop)
	b, _ := w.service(t, "B", noop)
	run(t, a)
	run(t, b)
	ctx := context.Background()
	const n = 8
	var fields []string
	for i := range n {
		// Written as kar before groups (or a migration tool) did: the
		// runners adopt them into groups of their own.
		sub := Subscription{Actor: Actor{Type: "Sub", ID: fmt.Sprintf("a%d", i)}, ID: fmt.Sprintf("s%d", i), Path: "/m", Topic: "many", OffsetOldest: true}
		raw, _ := json.Marshal(sub)
		w.rdb.HSet(ctx, a.keys.Subscriptions(), sub.field(), raw)
		fields = append(fields, sub.unit())
	}
	a.notify(ctx)
	held := func() map[string]int {
		m := map[string]int{}
		for _, f := range fields {
			m[w.rdb.Get(ctx, groupLeaseKey(a.keys, f)).Val()]++
		}
		return m
	}
	// However the first round went (a loaded machine may let one runner
	// take everything), the runners end with a fair share each.
	testenv.Eventually(t, 20*time.Second, func() bool {
		m := held()
		return m["A"] == n/2 && m["B"] == n/2
	}, "the runners share the subscriptions")
}

// leasedBy counts the subscriptions s0..s(n-1) of topic whose group's
// lease holder is holder.
func (w *world) leasedBy(ctx context.Context, a *Service, topic string, n int, holder string) int {
	c := 0
	for i := range n {
		if w.rdb.Get(ctx, groupLeaseKey(a.keys, unitOf(topic, fmt.Sprintf("s%d", i)))).Val() == holder {
			c++
		}
	}
	return c
}

// TestLateRunnerGetsItsShare: a runner that joins after another took every
// subscription is handed its share, and no event is lost or delivered twice
// in the hand-over.
func TestLateRunnerGetsItsShare(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	a, _ := w.service(t, "A", rec.deliverAs("A"))
	base := serve(t, a).URL
	const n = 4
	for i := range n {
		subscribe(t, base, fmt.Sprintf("a%d", i), fmt.Sprintf("s%d", i), `{"path":"/m","topic":"late","contentType":"application/json"}`)
	}
	run(t, a)
	ctx := context.Background()
	leased := func(holder string) int { return w.leasedBy(ctx, a, "late", n, holder) }
	testenv.Eventually(t, 10*time.Second, func() bool { return leased("A") == n }, "A takes every subscription")
	publishN(t, base, "late", 0, 10)
	b, _ := w.service(t, "B", rec.deliverAs("B"))
	run(t, b)
	publishN(t, base, "late", 10, 20)
	testenv.Eventually(t, 20*time.Second, func() bool { return leased("A") == n/2 && leased("B") == n/2 }, "B gets its share")
	publishN(t, base, "late", 20, 30)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= n*30 }, "every event delivered to every subscription")
	perActor := map[string][]delivery{}
	for _, d := range rec.snapshot() {
		perActor[d.actorID] = append(perActor[d.actorID], d)
	}
	for id, ds := range perActor {
		nums := numbers(t, ds)
		slices.Sort(nums)
		if !slices.Equal(nums, seq(0, 30)) {
			t.Errorf("actor %s got %v, want each of 0..29 once", id, nums)
		}
	}
	if len(perActor) != n {
		t.Errorf("deliveries reached %d actors, want %d", len(perActor), n)
	}
}

// TestLateRunnerGetsItsShareOfAMissingTopic: a runner that took every
// subscription of a topic that does not exist yet (its workers wait for
// it) hands the excess over to a runner that joins, as for a topic that
// exists: a worker between failed sessions heard no hand-off and kept its
// lease, renewed, for as long as the topic was missing.
func TestLateRunnerGetsItsShareOfAMissingTopic(t *testing.T) {
	w := newWorld(t)
	noop := func(context.Context, string, string, string, string, []byte) error { return nil }
	a, _ := w.service(t, "A", noop)
	run(t, a)
	ctx := context.Background()
	const n = 4
	for i := range n {
		// Written straight to Redis: subscribing through the API would
		// create the topic.
		sub := Subscription{Actor: Actor{Type: "Sub", ID: fmt.Sprintf("a%d", i)}, ID: fmt.Sprintf("s%d", i), Path: "/m", Topic: "nowhere"}
		raw, _ := json.Marshal(sub)
		w.rdb.HSet(ctx, a.keys.Subscriptions(), sub.field(), raw)
	}
	a.notify(ctx)
	leased := func(holder string) int { return w.leasedBy(ctx, a, "nowhere", n, holder) }
	testenv.Eventually(t, 10*time.Second, func() bool { return leased("A") == n }, "A takes every subscription")
	b, _ := w.service(t, "B", noop)
	run(t, b)
	testenv.Eventually(t, 20*time.Second, func() bool { return leased("A") == n/2 && leased("B") == n/2 }, "B gets its share")
}

// TestRedisRestartDuringDelivery: with Redis killed, the runner pauses
// (it can neither check its lease nor commit); when Redis is back it goes
// on where it was, nothing lost.
func TestRedisRestartDuringDelivery(t *testing.T) {
	w := newWorld(t, testenv.DataDir(t.TempDir()))
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"t1","contentType":"application/json"}`)
	run(t, s)
	publishN(t, base, "t1", 0, 3)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() == 3 }, "3 deliveries")
	if err := w.b.StopRedis(true); err != nil {
		t.Fatal(err)
	}
	publishN(t, base, "t1", 3, 8) // publishing needs only Kafka
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.b.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return rec.count() >= 8 }, "deliveries resume")
	checkAtLeastOnceInOrder(t, numbers(t, rec.snapshot()), 8)
}

// TestKafkaRestartDuringDelivery: the runner reconnects to a restarted
// broker and goes on from its committed offset.
func TestKafkaRestartDuringDelivery(t *testing.T) {
	w := newWorld(t, testenv.DataDir(t.TempDir()))
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"t1","contentType":"application/json"}`)
	run(t, s)
	publishN(t, base, "t1", 0, 3)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() == 3 }, "3 deliveries")
	w.b.StopKafka()
	if err := w.b.StartKafka(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		st, _ := do(t, "POST", base+"/kar/v1/event/t1/publish", "application/json", `{"n":3}`)
		return st == 200
	}, "publish after the broker restarted")
	publishN(t, base, "t1", 4, 8)
	testenv.Eventually(t, 60*time.Second, func() bool { return rec.count() >= 8 }, "deliveries resume")
	checkAtLeastOnceInOrder(t, numbers(t, rec.snapshot()), 8)
}
