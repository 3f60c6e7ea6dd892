package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

// startActors runs the test actor component (kar-sdk's actor runtime over h2c).
func startActors(t *testing.T, b *devenv.Backend, name, app string) *testenv.Proc {
	t.Helper()
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	port := testenv.FreePort(t)
	p := testenv.Start(t, name, karEnv(b, "NODE_PATH="+nodeModules), filepath.Join(repo(t), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", app, "-actors", "Counter", "-h2c", "-app_port", strconv.Itoa(port), "-v", "info", "node", "actors.js")
	p.WaitOutput(t, "actors ready", 30*time.Second)
	return p
}

// actorCall calls Counter/id.method(args...) through the sidecar at base.
func actorCall(t *testing.T, base, id, method string, args ...any) (int, map[string]any, string) {
	t.Helper()
	body, _ := json.Marshal(args)
	if args == nil {
		body = []byte("[]")
	}
	resp, got := do(t, "POST", base+"/kar/v1/actor/Counter/"+id+"/call/"+method, http.Header{"Content-Type": {"application/kar+json"}}, string(body))
	var m map[string]any
	json.Unmarshal([]byte(got), &m)
	return resp.StatusCode, m, got
}

func value(t *testing.T, base, id, method string, args ...any) any {
	t.Helper()
	status, m, raw := actorCall(t, base, id, method, args...)
	if status != 200 || m == nil || m["error"] != nil {
		t.Fatalf("%s.%s(%v): %d %s", id, method, args, status, raw)
	}
	return m["value"]
}

// TestActors covers the actor programming model through the REST API with
// a kar-sdk actor component: activation and state, results, errors, one
// method at a time, re-entrancy, tail calls, async/promise, reminders and
// removal.
func TestActors(t *testing.T) {
	b := testenv.Backend(t)
	host := startActors(t, b, "host", "actors")
	_, base := sidecarAlone(t, b, "actors")

	if v := value(t, base, "a", "incr", 2); v != 2.0 {
		t.Fatalf("incr = %v", v)
	}
	host.WaitOutput(t, "activate a", 5*time.Second)
	if v := value(t, base, "a", "get"); v != 2.0 {
		t.Errorf("get = %v", v)
	}
	resp, got := do(t, "GET", base+"/kar/v1/actor/Counter/a/state/count", nil, "")
	if resp.StatusCode != 200 || got != "2" {
		t.Errorf("state: %d %s", resp.StatusCode, got)
	}
	if status, _, raw := actorCall(t, base, "a", "none"); status != 204 {
		t.Errorf("none: %d %s", status, raw)
	}
	// kar-sdk 1.3.10's actor runtime answers a thrown error with express's
	// 404 page (its catch calls next() without the error); the sidecar
	// passes the component's answer back as it is.
	if status, _, raw := actorCall(t, base, "a", "fail"); status != 404 || !strings.Contains(raw, "Cannot POST") {
		t.Errorf("fail: %d %s", status, raw)
	}
	if v := value(t, base, "a", "get"); v != 2.0 {
		t.Errorf("after a failed method, get = %v", v)
	}

	t.Run("one method at a time", func(t *testing.T) {
		var wg sync.WaitGroup
		for i := 0; i < 8; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); value(t, base, "serial", "slow", 30) }()
		}
		wg.Wait()
		if v := value(t, base, "serial", "get"); v != 8.0 {
			t.Errorf("8 concurrent slow() left count %v: calls overlapped", v)
		}
	})
	t.Run("re-entrancy", func(t *testing.T) {
		if v := value(t, base, "r", "selfCall", 4); v != "bottom" {
			t.Errorf("selfCall = %v", v)
		}
		value(t, base, "r2", "incr", 5)
		if v := value(t, base, "r", "ping", "r2"); v != 0.0 {
			t.Errorf("ping = %v, want r's own count 0", v)
		}
	})
	t.Run("tail calls", func(t *testing.T) {
		if v := value(t, base, "t", "chain", 5); v != 5.0 {
			t.Errorf("chain(5) = %v", v)
		}
		if v := value(t, base, "t", "hop", "t2", 7); v != 7.0 {
			t.Errorf("hop = %v", v)
		}
		if v := value(t, base, "t2", "get"); v != 7.0 {
			t.Errorf("t2 = %v after hop", v)
		}
	})
	t.Run("async and promise", func(t *testing.T) {
		resp, _ := do(t, "POST", base+"/kar/v1/actor/Counter/p/call/incr", http.Header{"Pragma": {"async"}}, "[3]")
		if resp.StatusCode != 202 {
			t.Fatalf("async: %d", resp.StatusCode)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return value(t, base, "p", "get") == 3.0 }, "async incr applied")
		resp, id := do(t, "POST", base+"/kar/v1/actor/Counter/p/call/incr", http.Header{"Pragma": {"promise"}}, "[4]")
		if resp.StatusCode != 202 {
			t.Fatalf("promise: %d", resp.StatusCode)
		}
		_, got := do(t, "POST", base+"/kar/v1/await", nil, id)
		if got != `{"value":7}` {
			t.Errorf("await = %s", got)
		}
	})
	t.Run("reminders", func(t *testing.T) {
		if v := value(t, base, "rem", "remind", 200, 6); v != "scheduled" {
			t.Fatalf("remind = %v", v)
		}
		testenv.Eventually(t, 10*time.Second, func() bool { return value(t, base, "rem", "get") == 6.0 }, "reminder fired")
		_, got := do(t, "GET", base+"/kar/v1/actor/Counter/rem/reminders", nil, "")
		if got != "[]" {
			t.Errorf("one-shot reminder still listed: %s", got)
		}
	})
	t.Run("remove", func(t *testing.T) {
		value(t, base, "gone", "incr", 9)
		resp, got := do(t, "DELETE", base+"/kar/v1/actor/Counter/gone", nil, "")
		if resp.StatusCode != 202 { // as KAR
			t.Fatalf("delete: %d %s", resp.StatusCode, got)
		}
		host.WaitOutput(t, "deactivate gone", 5*time.Second)
		if v := value(t, base, "gone", "get"); v != 0.0 {
			t.Errorf("after delete, count = %v", v)
		}
	})
}

// TestActorPlacementAfterHostDies: an instance lives on one host; when that
// host is killed (-9), the next call re-activates it on the other host with
// its state.
func TestActorPlacementAfterHostDies(t *testing.T) {
	b := testenv.Backend(t)
	h1 := startActors(t, b, "host1", "place")
	h2 := startActors(t, b, "host2", "place")
	_, base := sidecarAlone(t, b, "place")
	value(t, base, "x", "incr", 11)
	pid := int(value(t, base, "x", "pid").(float64))
	victim, other := h1, h2
	if pid == childPID(t, h2.PID()) {
		victim, other = h2, h1
	}
	for i := 0; i < 5; i++ {
		if p := int(value(t, base, "x", "pid").(float64)); p != pid {
			t.Fatalf("instance moved while its host lives: %d then %d", pid, p)
		}
	}
	// Delivery is at least once: an incr answered but not yet committed
	// when its host dies runs again on the next one.
	waitCommitted(t, b, "place")
	victim.Kill()
	if v := value(t, base, "x", "get"); v != 11.0 {
		t.Errorf("state after moving: %v", v)
	}
	if p := int(value(t, base, "x", "pid").(float64)); p != childPID(t, other.PID()) {
		t.Errorf("answered by pid %d, want the surviving host's", p)
	}
}

// TestTailCallChainSurvivesHostKill runs a chain of tail calls that
// alternates between two hosts and kills one host (-9) between two steps:
// the chain completes, and every step ran exactly once.
func TestTailCallChainSurvivesHostKill(t *testing.T) {
	b := testenv.Backend(t)
	h1 := startActors(t, b, "host1", "chain")
	h2 := startActors(t, b, "host2", "chain")
	_, base := sidecarAlone(t, b, "chain")
	pids := map[int]*testenv.Proc{childPID(t, h1.PID()): h1, childPID(t, h2.PID()): h2}
	byHost := map[*testenv.Proc][]string{}
	for i := 0; len(byHost[h1]) < 3 || len(byHost[h2]) < 3; i++ {
		if i > 60 {
			t.Fatalf("placement never spread over both hosts: %v", byHost)
		}
		id := "n" + strconv.Itoa(i)
		host := pids[int(value(t, base, id, "pid").(float64))]
		byHost[host] = append(byHost[host], id)
	}
	// Steps alternate: h1, h2, h1, h2, h1, h2.
	var ids []string
	for i := 0; i < 3; i++ {
		ids = append(ids, byHost[h1][i], byHost[h2][i])
	}
	result := make(chan any, 1)
	go func() {
		_, m, raw := actorCall(t, base, ids[0], "relay", ids, 0, 300)
		if m == nil {
			result <- raw
			return
		}
		result <- m["value"]
	}()
	// Step 2 runs on h1 once step 1 on h2 finished: kill h2 then.
	h1.WaitOutput(t, "relay start 2 "+ids[2], 30*time.Second)
	h2.Kill()
	select {
	case v := <-result:
		if v != 6.0 {
			t.Fatalf("chain result %v, want 6", v)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the chain did not complete within 60s of the kill")
	}
	for _, id := range ids {
		resp, got := do(t, "GET", base+"/kar/v1/actor/Counter/"+id+"/state/visits", nil, "")
		if resp.StatusCode != 200 || got != "1" {
			t.Errorf("instance %s ran its step %s times (status %d), want once", id, got, resp.StatusCode)
		}
	}
}

// TestRemindersSurviveRestartOfEverything: a periodic reminder keeps firing
// after every component, sidecar, Redis and Kafka were stopped and started
// again; it re-activates its instance on the new host, state intact.
func TestRemindersSurviveRestartOfEverything(t *testing.T) {
	b := testenv.Backend(t, testenv.DataDir(t.TempDir()))
	host := startActors(t, b, "host1", "forever")
	caller, base := sidecarAlone(t, b, "forever")
	if v := value(t, base, "tick", "remindEvery", "200ms"); v != "scheduled" {
		t.Fatalf("remindEvery = %v", v)
	}
	var before float64
	testenv.Eventually(t, 20*time.Second, func() bool {
		before, _ = value(t, base, "tick", "get").(float64)
		return before >= 3
	}, "the periodic reminder fires")

	host.Kill()
	caller.Kill()
	if err := b.StopRedis(true); err != nil {
		t.Fatal(err)
	}
	b.StopKafka()
	if err := b.StartRedis(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := b.StartKafka(); err != nil {
		t.Fatal(err)
	}

	host2 := startActors(t, b, "host2", "forever")
	host2.WaitOutput(t, "activate tick", 30*time.Second)
	_, base2 := sidecarAlone(t, b, "forever")
	testenv.Eventually(t, 30*time.Second, func() bool {
		v, _ := value(t, base2, "tick", "get").(float64)
		return v >= before+3
	}, "the reminder fires again after the restart, from count %v", before)
	_, got := do(t, "GET", base2+"/kar/v1/actor/Counter/tick/reminders/tick", nil, "")
	if !strings.Contains(got, `"period":200000000`) {
		t.Errorf("reminder after restart: %s", got)
	}
}

// TestEventSubscription: an actor subscribed to a topic gets the events
// published to it, through the sidecar's subscription runner and the mesh.
func TestEventSubscription(t *testing.T) {
	b := testenv.Backend(t)
	startActors(t, b, "host", "events")
	_, base := sidecarAlone(t, b, "events")
	resp, got := do(t, "PUT", base+"/kar/v1/actor/Counter/sub/events/nums", http.Header{"Content-Type": {"application/json"}},
		`{"path": "/incr", "topic": "nums", "contentType": "application/json"}`)
	if resp.StatusCode >= 300 {
		t.Fatalf("subscribe: %d %s", resp.StatusCode, got)
	}
	for i := 1; i <= 5; i++ {
		resp, got := do(t, "POST", base+"/kar/v1/event/nums/publish", http.Header{"Content-Type": {"application/json"}}, strconv.Itoa(i))
		if resp.StatusCode >= 300 {
			t.Fatalf("publish %d: %d %s", i, resp.StatusCode, got)
		}
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return value(t, base, "sub", "get") == 15.0 }, "5 events delivered (count 15)")
}

// TestSubscriptionsSurviveAKilledRunner: subscriptions of one topic,
// delivered by three sidecars (which read the topic once each for all the
// subscriptions they deliver), lose no event when one of them is killed
// (-9) mid-stream: its subscriptions go on elsewhere from their committed
// offsets, and every subscription gets every event.
func TestSubscriptionsSurviveAKilledRunner(t *testing.T) {
	b := testenv.Backend(t)
	victim := startActors(t, b, "h1", "evkill")
	startActors(t, b, "h2", "evkill")
	_, base := sidecarAlone(t, b, "evkill")
	const subs, events = 9, 40
	for i := range subs {
		resp, got := do(t, "PUT", fmt.Sprintf("%s/kar/v1/actor/Counter/s%d/events/sub%d", base, i, i), http.Header{"Content-Type": {"application/json"}},
			`{"path": "/seen", "topic": "kill", "contentType": "application/json"}`)
		if resp.StatusCode >= 300 {
			t.Fatalf("subscribe: %d %s", resp.StatusCode, got)
		}
	}
	// missing lists the events subscription i has not had yet.
	missing := func(i int) []int {
		_, got := do(t, "GET", fmt.Sprintf("%s/kar/v1/actor/Counter/s%d/state", base, i), nil, "")
		var st map[string]any
		json.Unmarshal([]byte(got), &st)
		var out []int
		for n := 1; n <= events; n++ {
			if c, _ := st["e"+strconv.Itoa(n)].(float64); c < 1 {
				out = append(out, n)
			}
		}
		return out
	}
	publish := func(n int) {
		resp, got := do(t, "POST", base+"/kar/v1/event/kill/publish", http.Header{"Content-Type": {"application/json"}}, strconv.Itoa(n))
		if resp.StatusCode >= 300 {
			t.Fatalf("publish %d: %d %s", n, resp.StatusCode, got)
		}
	}
	// The subscriptions start delivering (each runner has its share).
	publish(1)
	testenv.Eventually(t, 30*time.Second, func() bool {
		for i := range subs {
			if m := missing(i); len(m) > 0 && m[0] == 1 {
				return false
			}
		}
		return true
	}, "the first event delivered to every subscription")
	for n := 2; n <= events; n++ {
		publish(n)
		if n == events/2 {
			victim.Kill()
		}
	}
	for i := range subs {
		testenv.Eventually(t, 60*time.Second, func() bool { return len(missing(i)) == 0 },
			"subscription %d gets every event after a runner was killed (missing %v)", i, missing(i))
	}
}

// TestServiceTailCallsAndActorTimers: tail calls actor → service and
// service → service, -actor_busy_timeout, and the idle collector.
func TestServiceTailCallsAndActorTimers(t *testing.T) {
	b := testenv.Backend(t)
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	td := filepath.Join(repo(t), "test", "mesh", "testdata")
	svc := testenv.Start(t, "tails", karEnv(b, "NODE_PATH="+nodeModules), td, testenv.KarBin(t), "run", "-app", "timers", "-service", "tails",
		"-app_port", strconv.Itoa(testenv.FreePort(t)), "node", "services.js")
	svc.WaitOutput(t, "services ready", 30*time.Second)
	host := testenv.Start(t, "host", karEnv(b, "NODE_PATH="+nodeModules), td, testenv.KarBin(t), "run", "-app", "timers", "-actors", "Counter", "-h2c",
		"-app_port", strconv.Itoa(testenv.FreePort(t)), "-actor_busy_timeout", "300ms", "-actor_collector_interval", "1s", "node", "actors.js")
	host.WaitOutput(t, "actors ready", 30*time.Second)
	waitServes(t, b, "timers", "tails", 1)
	_, base := sidecarAlone(t, b, "timers")

	resp, got := do(t, "POST", base+"/kar/v1/service/tails/call/start", http.Header{"Content-Type": {"application/json"}}, `{"name":"Ada"}`)
	if resp.StatusCode != 200 || !strings.Contains(got, "Hello Ada via tail call!") {
		t.Errorf("service → service tail call: %d %s", resp.StatusCode, got)
	}
	_, _, raw := actorCall(t, base, "ts", "toService", "Bob")
	if !strings.Contains(raw, "Hello Bob!") {
		t.Errorf("actor → service tail call: %s", raw)
	}

	// While slow() holds the instance for 2s, another call waits at most 300ms.
	slow := make(chan struct{})
	go func() { defer close(slow); actorCall(t, base, "busy", "slow", 2000) }()
	testenv.Eventually(t, 10*time.Second, func() bool { return strings.Contains(host.Output(), "activate busy") }, "busy activated")
	status, _, raw := actorCall(t, base, "busy", "get")
	if status != 500 || !strings.Contains(raw, "actor_busy_timeout") { // KAR answers 500
		t.Errorf("call on a busy instance: %d %s", status, raw)
	}
	<-slow

	// An instance idle past -actor_collector_interval is deactivated.
	value(t, base, "idle", "incr", 1)
	host.WaitOutput(t, "deactivate idle", 20*time.Second)
	if v := value(t, base, "idle", "get"); v != 1.0 {
		t.Errorf("after collection, state = %v", v)
	}
}

// TestReplicasShareLoad: calls to a service with two replicas reach both.
func TestReplicasShareLoad(t *testing.T) {
	b := testenv.Backend(t)
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	td := filepath.Join(repo(t), "test", "mesh", "testdata")
	for _, name := range []string{"r1", "r2"} {
		p := testenv.Start(t, name, karEnv(b, "NODE_PATH="+nodeModules), td, testenv.KarBin(t), "run", "-app", "share", "-service", "tails",
			"-app_port", strconv.Itoa(testenv.FreePort(t)), "node", "services.js")
		p.WaitOutput(t, "services ready", 30*time.Second)
	}
	waitServes(t, b, "share", "tails", 2)
	_, base := sidecarAlone(t, b, "share")
	pids := map[float64]int{}
	for i := 0; i < 20; i++ {
		_, got := do(t, "POST", base+"/kar/v1/service/tails/call/hello", http.Header{"Content-Type": {"application/json"}}, `{"name":"x"}`)
		var m map[string]any
		json.Unmarshal([]byte(got), &m)
		pid, _ := m["pid"].(float64)
		pids[pid]++
	}
	if len(pids) != 2 {
		t.Errorf("20 calls reached %d replica(s): %v", len(pids), pids)
	}
	for pid, n := range pids {
		if n < 5 {
			t.Errorf("replica %v got %d of 20 calls", pid, n)
		}
	}
}

// TestChainRedeliveredThroughAnotherSidecar: a chain of steps on one
// instance keeps its first request unfinished until the chain ends; its
// host is killed mid-chain, the partition is adopted by a sidecar that
// hosts no actor, which forwards the request once a new host joins. The
// new host replays the recorded steps: none of the finished steps runs again.
func TestChainRedeliveredThroughAnotherSidecar(t *testing.T) {
	b := testenv.Backend(t)
	h1 := startActors(t, b, "host1", "redeliver")
	caller, base := sidecarAlone(t, b, "redeliver")
	result := make(chan any, 1)
	go func() {
		_, m, raw := actorCall(t, base, "c", "slowChain", 5, 0, 300)
		if m == nil {
			result <- raw
			return
		}
		result <- m["value"]
	}()
	h1.WaitOutput(t, "slowChain start 2", 30*time.Second)
	h1.Kill()
	// The caller's sidecar adopts host1's partition and holds the request
	// until a host of Counter joins.
	caller.WaitOutput(t, "adopted an orphaned partition", 30*time.Second)
	h2 := startActors(t, b, "host2", "redeliver")
	select {
	case v := <-result:
		if v != 5.0 {
			t.Fatalf("chain result %v, want 5", v)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the chain did not complete")
	}
	if strings.Contains(h2.Output(), "slowChain start 0") || strings.Contains(h2.Output(), "slowChain start 1") {
		t.Errorf("finished steps ran again on the new host:\n%s", h2.Output())
	}
	for i := 0; i < 5; i++ {
		_, got := do(t, "GET", base+"/kar/v1/actor/Counter/c/state/step"+strconv.Itoa(i), nil, "")
		if got != "1" {
			t.Errorf("step %d recorded %s times, want once", i, got)
		}
	}
}

// TestDeadHostsRecordDoesNotCaptureCalls: a host is killed (-9) while its
// registration record outlives its partition's lease (here kept alive on
// purpose; in life a registration written after the last lease renewal,
// or a stalled Redis round trip, does this for a while). The sidecar that
// adopts the dead host's partition must not pass the instance's calls
// back to that partition, which it reads itself, again and again: the
// call is answered by the surviving host, with the state.
func TestDeadHostsRecordDoesNotCaptureCalls(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	rdb := redisOf(t, b)
	keys := store.NewKeys("stale")
	members := func() []string {
		ids, err := rdb.SMembers(ctx, keys.Sidecars()).Result()
		if err != nil {
			t.Fatalf("redis: %v", err)
		}
		return ids
	}
	h1 := startActors(t, b, "host1", "stale")
	testenv.Eventually(t, 10*time.Second, func() bool { return len(members()) == 1 }, "host1 registered")
	h1ID := members()[0]
	h2 := startActors(t, b, "host2", "stale")
	testenv.Eventually(t, 10*time.Second, func() bool { return len(members()) == 2 }, "host2 registered")
	h2ID := ""
	for _, id := range members() {
		if id != h1ID {
			h2ID = id
		}
	}
	_, base := sidecarAlone(t, b, "stale")
	value(t, base, "x", "incr", 7)
	victim, victimID, other := h1, h1ID, h2
	if int(value(t, base, "x", "pid").(float64)) == childPID(t, h2.PID()) {
		victim, victimID, other = h2, h2ID, h1
	}
	waitCommitted(t, b, "stale")
	victim.Kill()
	// Keep the dead host's record from expiring while it exists.
	stop := make(chan struct{})
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		for {
			rdb.PExpire(ctx, keys.Sidecar(victimID), 2*time.Second)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	defer func() { close(stop); <-kept }()
	if v := value(t, base, "x", "get"); v != 7.0 {
		t.Errorf("state after moving: %v", v)
	}
	if p := int(value(t, base, "x", "pid").(float64)); p != childPID(t, other.PID()) {
		t.Errorf("answered by pid %d, want the surviving host's", p)
	}
}

// TestFinishedCallsNotRunAgain: a long actor call holds its host's
// partition position (the position stops at the first unfinished record);
// calls after it finish. The host is killed (-9): the partition's next
// owner runs the long call again (it never finished), but not the calls
// that had finished after it: their effects happen once.
func TestFinishedCallsNotRunAgain(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	rdb := redisOf(t, b)
	h1 := startActors(t, b, "host1", "finished")
	_, base := sidecarAlone(t, b, "finished")
	resp, got := do(t, "POST", base+"/kar/v1/actor/Counter/long/call/slow", http.Header{"Content-Type": {"application/kar+json"}, "Pragma": {"async"}}, "[30000]")
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("async slow: %d %s", resp.StatusCode, got)
	}
	h1.WaitOutput(t, "activate long", 10*time.Second)
	value(t, base, "b", "incr", 1)
	if v := value(t, base, "b", "incr", 1); v != 2.0 {
		t.Fatalf("incr = %v, want 2", v)
	}
	// Both incr records are committed as finished past the position.
	testenv.Eventually(t, 10*time.Second, func() bool {
		found, _ := rdb.Keys(ctx, "*:finished").Result()
		for _, k := range found {
			if s, _ := rdb.Get(ctx, k).Result(); strings.Contains(s, "-") {
				return true
			}
		}
		return false
	}, "the finished calls committed")
	startActors(t, b, "host2", "finished")
	h1.Kill()
	if v := value(t, base, "b", "get"); v != 2.0 {
		t.Errorf("after the host died, count = %v, want 2 (finished calls ran again)", v)
	}
}

// TestActivationWaitsOutRedisOutage: an instance's call reaches its host
// while Redis is down, and the instance must be activated first (the
// collector had deactivated it): its placement cannot be claimed. The call
// must wait for Redis and be answered once it is back, not be left
// unfinished on the host's partition.
func TestActivationWaitsOutRedisOutage(t *testing.T) {
	b := testenv.Backend(t, testenv.DataDir(t.TempDir())) // Redis keeps its data across the restart
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	host := testenv.Start(t, "host", karEnv(b, "NODE_PATH="+nodeModules), filepath.Join(repo(t), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", "outage", "-actors", "Counter", "-h2c", "-app_port", strconv.Itoa(testenv.FreePort(t)),
		"-actor_collector_interval", "1s", "-v", "info", "node", "actors.js")
	host.WaitOutput(t, "actors ready", 30*time.Second)
	_, base := sidecarAlone(t, b, "outage")
	if v := value(t, base, "x", "incr", 4); v != 4.0 {
		t.Fatalf("incr = %v", v)
	}
	// The caller keeps the host in its placement cache; the host drops
	// the idle instance.
	host.WaitOutput(t, "deactivate x", 10*time.Second)
	if err := b.StopRedis(true); err != nil {
		t.Fatal(err)
	}
	done := make(chan result, 1)
	go func() { done <- post(base+"/kar/v1/actor/Counter/x/call/get", "[]") }()
	testenv.Eventually(t, 20*time.Second, func() bool {
		out := host.Output()
		return strings.Contains(out, "cannot place an actor instance") || strings.Contains(out, `msg="actor placement"`)
	}, "the host to try to place the instance")
	if err := b.StartRedis(context.Background()); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.code != 200 || !strings.Contains(r.body, `"value":4`) {
		t.Fatalf("the call made during the outage: %d %q %v", r.code, r.body, r.err)
	}
}
