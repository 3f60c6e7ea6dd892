// Package cluster_test runs kar on a real Redis Cluster: three redis-server
// processes in cluster mode (one primary each), created by the test with
// `redis-cli --cluster create`, and the Kafka-protocol broker; kar's
// processes get REDIS_CLUSTER=true and the three nodes in REDIS_HOST.
package cluster_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
)

func repo() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// nodeModules is the kar-sdk and express of the hello example (scripts/test.sh installs them).
func nodeModules(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH: %v", err)
	}
	dir := filepath.Join(repo(), "examples", "service-hello-js", "node_modules")
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("run `npm install` in examples/service-hello-js first (scripts/test.sh does): %v", err)
	}
	return dir
}

// world is one Redis Cluster, one broker and the environment of kar
// processes using them.
type world struct {
	rc  *testenv.RedisCluster
	env []string
}

func newWorld(t *testing.T, opts ...testenv.ClusterOption) *world {
	t.Helper()
	testenv.KarBin(t)
	rc := testenv.StartRedisCluster(t, 3, opts...)
	b := testenv.Backend(t)
	// The cluster's settings come last and win over the backend's own Redis.
	env := append(append(b.Env(), rc.Env()...), "KAR_LEASE_TTL=1s")
	return &world{rc: rc, env: env}
}

func (w *world) kar(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return testenv.RunKar(t, w.env, args...)
}

// actors starts test/mesh's Counter actor component under kar run.
func (w *world) actors(t *testing.T, name, app string) *testenv.Proc {
	t.Helper()
	port := testenv.FreePort(t)
	p := testenv.Start(t, name, append(w.env, "NODE_PATH="+nodeModules(t)), filepath.Join(repo(), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", app, "-actors", "Counter", "-h2c", "-app_port", strconv.Itoa(port), "-v", "info", "node", "actors.js")
	p.WaitOutput(t, "actors ready", 30*time.Second)
	return p
}

// sidecar starts a sidecar without a component and returns its REST API.
func (w *world) sidecar(t *testing.T, app string) (*testenv.Proc, string) {
	t.Helper()
	port := testenv.FreePort(t)
	p := testenv.Start(t, "sidecar", w.env, "", testenv.KarBin(t), "run", "-app", app, "-runtime_port", strconv.Itoa(port), "-v", "info")
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	testenv.WaitHealthy(t, base, 30*time.Second)
	return p, base
}

var client = &http.Client{Timeout: 60 * time.Second}

func do(t *testing.T, method, url, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// call calls Counter/id.method(args...) and returns its value.
func call(t *testing.T, base, id, method string, args ...any) any {
	t.Helper()
	body, _ := json.Marshal(args)
	if args == nil {
		body = []byte("[]")
	}
	status, raw := do(t, "POST", base+"/kar/v1/actor/Counter/"+id+"/call/"+method, "application/kar+json", string(body))
	var m map[string]any
	if status != 200 || json.Unmarshal([]byte(raw), &m) != nil || m["error"] != nil {
		t.Fatalf("%s.%s(%v): %d %s", id, method, args, status, raw)
	}
	return m["value"]
}

// keysPerNode counts the keys matching pattern on each primary.
func (w *world) keysPerNode(t *testing.T, pattern string) []int {
	t.Helper()
	out := make([]int, len(w.rc.Addrs))
	for i := range w.rc.Addrs {
		keys, err := w.rc.Node(t, i).Keys(context.Background(), pattern).Result()
		if err != nil {
			t.Fatal(err)
		}
		out[i] = len(keys)
	}
	return out
}

// TestRedisCluster: the flows of the user guide with REDIS_CLUSTER=true.
func TestRedisCluster(t *testing.T) {
	w := newWorld(t)

	// The deployment guide's hello world: a service, a client that
	// exits, and kar rest.
	t.Run("hello", func(t *testing.T) {
		dir := filepath.Join(repo(), "examples", "service-hello-js")
		nodeModules(t)
		port := testenv.FreePort(t)
		server := testenv.Start(t, "server", w.env, dir, testenv.KarBin(t), "run", "-app", "hello-rc", "-service", "greeter",
			"-app_port", strconv.Itoa(port), "-v", "info", "node", "server.js")
		testenv.Eventually(t, 30*time.Second, func() bool {
			out, code := w.kar(t, "get", "-app", "hello-rc", "-s", "sidecars")
			return code == 0 && strings.Contains(out, "greeter")
		}, "the greeter to join")
		client := testenv.Start(t, "client", w.env, dir, testenv.KarBin(t), "run", "-app", "hello-rc", "node", "client.js")
		if code, err := client.Wait(60 * time.Second); err != nil || code != 0 {
			t.Fatalf("client exit %d, %v; output:\n%s", code, err, client.Output())
		}
		if n := strings.Count(client.Output(), "[STDOUT] Hello John Doe!"); n != 2 {
			t.Errorf("client printed Hello John Doe! %d times, want 2:\n%s", n, client.Output())
		}
		out, code := w.kar(t, "rest", "-app", "hello-rc", "post", "greeter", "helloJson", `{"name": "Alan Turing"}`)
		if code != 0 || strings.TrimSpace(out) != `{"greetings":"Hello Alan Turing!"}` {
			t.Errorf("kar rest: exit %d, %q", code, out)
		}
		server.Signal(syscall.SIGTERM)
		server.Wait(20 * time.Second)
	})

	// Actors with state, tail calls, reminders and events; kar get; the
	// keys spread over the primaries; kar drain and purge scan them all.
	t.Run("actors", func(t *testing.T) {
		const app = "actors-rc"
		host := w.actors(t, "host", app)
		caller, base := w.sidecar(t, app)

		const n = 24
		for i := range n {
			if v := call(t, base, "c"+strconv.Itoa(i), "incr", i+1); v != float64(i+1) {
				t.Fatalf("c%d.incr = %v", i, v)
			}
		}
		if v := call(t, base, "c3", "get"); v != 4.0 {
			t.Errorf("c3.get = %v", v)
		}
		if v := call(t, base, "t", "chain", 5); v != 5.0 {
			t.Errorf("chain(5) = %v", v)
		}
		if v := call(t, base, "t", "hop", "t2", 7); v != 7.0 {
			t.Errorf("hop = %v", v)
		}

		// A one-shot and a periodic reminder.
		if v := call(t, base, "rem", "remind", 200, 6); v != "scheduled" {
			t.Fatalf("remind = %v", v)
		}
		if v := call(t, base, "tick", "remindEvery", "200ms"); v != "scheduled" {
			t.Fatalf("remindEvery = %v", v)
		}
		testenv.Eventually(t, 20*time.Second, func() bool { return call(t, base, "rem", "get") == 6.0 }, "the reminder fired")
		testenv.Eventually(t, 20*time.Second, func() bool { v, _ := call(t, base, "tick", "get").(float64); return v >= 3 }, "the periodic reminder fired 3 times")
		if _, got := do(t, "GET", base+"/kar/v1/actor/Counter/rem/reminders", "", ""); got != "[]" {
			t.Errorf("one-shot reminder still listed: %s", got)
		}
		if status, got := do(t, "DELETE", base+"/kar/v1/actor/Counter/tick/reminders/tick", "", ""); status != 200 {
			t.Errorf("cancel the periodic reminder: %d %s", status, got)
		}

		// Events: an actor subscribed to a topic gets what is published.
		if status, got := do(t, "PUT", base+"/kar/v1/actor/Counter/sub/events/nums", "application/json",
			`{"path": "/incr", "topic": "nums-rc", "contentType": "application/json"}`); status >= 300 {
			t.Fatalf("subscribe: %d %s", status, got)
		}
		for i := 1; i <= 5; i++ {
			if status, got := do(t, "POST", base+"/kar/v1/event/nums-rc/publish", "application/json", strconv.Itoa(i)); status >= 300 {
				t.Fatalf("publish %d: %d %s", i, status, got)
			}
		}
		testenv.Eventually(t, 30*time.Second, func() bool { return call(t, base, "sub", "get") == 15.0 }, "5 events delivered (count 15)")

		// The application's keys are on every primary, not in one slot.
		per := w.keysPerNode(t, store.NewKeys(app).Pattern())
		for i, c := range per {
			if c == 0 {
				t.Errorf("primary %d holds none of the application's keys (keys per primary: %v)", i, per)
			}
		}

		out, code := w.kar(t, "get", "-app", app, "-o", "json")
		var actors map[string][]string
		if code != 0 || json.Unmarshal([]byte(out), &actors) != nil || len(actors["Counter"]) < n {
			t.Errorf("kar get -o json: %d %s", code, out)
		}
		if out, code := w.kar(t, "get", "-app", app, "-t", "Counter", "-i", "c5"); code != 0 || !strings.Contains(out, `"count": 6`) {
			t.Errorf("kar get -i c5: %d\n%s", code, out)
		}
		if out, code := w.kar(t, "get", "-app", app, "-s", "load", "-o", "json"); code != 0 || !strings.Contains(out, `"Counter"`) {
			t.Errorf("kar get -s load: %d\n%s", code, out)
		}

		// Both members stop before the drain: a live one keeps its
		// partition's lease, and renewing it after the drain is right.
		for _, p := range []*testenv.Proc{host, caller} {
			p.Signal(syscall.SIGTERM)
			if _, err := p.Wait(20 * time.Second); err != nil {
				t.Fatal(err)
			}
		}
		if out, code := w.kar(t, "drain", "-app", app, "-force"); code != 0 {
			t.Fatalf("kar drain: %d %s", code, out)
		}
		keys := store.NewKeys(app)
		rc := w.rc.Client(t)
		ctx := context.Background()
		if v, _ := rc.HGet(ctx, keys.ActorState("Counter", "c5"), "count").Result(); v != "6" {
			t.Errorf("drain removed state: count=%q", v)
		}
		for _, p := range keys.Runtime() {
			if per := w.keysPerNode(t, p); per[0]+per[1]+per[2] != 0 {
				t.Errorf("keys %s left after drain: %v per primary", p, per)
			}
		}
		if out, code := w.kar(t, "purge", "-app", app, "-force"); code != 0 {
			t.Fatalf("kar purge: %d %s", code, out)
		}
		if per := w.keysPerNode(t, keys.Pattern()); per[0]+per[1]+per[2] != 0 {
			t.Errorf("keys left after purge: %v per primary", per)
		}
	})
}

// TestRedisClusterManaged: a cluster set up as managed services are (TLS
// to every node and on the cluster bus, a private CA, an ACL user with a
// password, the default user off): kar verifies each node's certificate
// against the address it dialled, and actors with state and reminders
// work; the password shows in no output.
func TestRedisClusterManaged(t *testing.T) {
	const password = "s3cret-cluster-pw"
	w := newWorld(t, testenv.ClusterTLS(testenv.Certs(t)), testenv.ClusterUser("karuser", password))
	const app = "managed-rc"
	host := w.actors(t, "host", app)
	sidecar, base := w.sidecar(t, app)
	for i := range 6 {
		if v := call(t, base, "m"+strconv.Itoa(i), "incr", i+1); v != float64(i+1) {
			t.Fatalf("m%d.incr = %v", i, v)
		}
	}
	if v := call(t, base, "rem", "remind", 100, 4); v != "scheduled" {
		t.Fatalf("remind = %v", v)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return call(t, base, "rem", "get") == 4.0 }, "the reminder fired")
	out, code := w.kar(t, "get", "-app", app, "-t", "Counter", "-i", "m3")
	if code != 0 || !strings.Contains(out, `"count": 4`) {
		t.Errorf("kar get -i m3: %d\n%s", code, out)
	}
	if per := w.keysPerNode(t, store.NewKeys(app).Pattern()); per[0] == 0 || per[1] == 0 || per[2] == 0 {
		t.Errorf("keys per primary: %v", per)
	}
	for _, p := range []*testenv.Proc{host, sidecar} {
		if strings.Contains(p.Output(), password) {
			t.Errorf("the Redis password shows in the output of a kar process")
		}
	}
}

// TestCrossSlotFails: the cluster the tests run against rejects what kar
// must not do, so that the flows above prove each script and transaction
// stays in one slot: a script over keys of two slots (CROSSSLOT), a script
// that touches a key it did not declare in another slot, and a
// transaction over two slots.
func TestCrossSlotFails(t *testing.T) {
	rc := testenv.StartRedisCluster(t, 3)
	c := rc.Client(t)
	ctx := context.Background()
	k := store.NewKeys("xs")
	two := redis.NewScript(`redis.call('SET', KEYS[1], '1'); redis.call('SET', KEYS[2], '1'); return 1`)

	if err := two.Run(ctx, c, []string{k.Lease(0), k.Sidecars()}, nil).Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
		t.Errorf("a script over a lease and the members set: %v, want CROSSSLOT", err)
	}
	undeclared := redis.NewScript(`redis.call('SET', KEYS[1], '1'); return redis.call('EXISTS', ARGV[1])`)
	if err := undeclared.Run(ctx, c, []string{k.Placement("T", "1")}, k.Sidecar("s1")).Err(); err == nil {
		t.Error("a script reading an undeclared key of another slot worked")
	}
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, k.Reminders("T", "1"), "f", "v")
		p.ZAdd(ctx, k.ReminderSchedule(), redis.Z{Score: 1, Member: "f"})
		return nil
	})
	if err == nil {
		t.Error("a transaction over a reminder and the schedule worked")
	}
	// What kar does instead works: one slot per script or transaction.
	if err := two.Run(ctx, c, []string{k.Lease(0), k.Offset(0)}, nil).Err(); err != nil {
		t.Errorf("a script over a partition's lease and offset: %v", err)
	}
	if err := two.Run(ctx, c, []string{k.ActorState("T", "1"), k.Placement("T", "1")}, nil).Err(); err != nil {
		t.Errorf("a script over an instance's state and placement: %v", err)
	}
	if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, k.Sidecar("s1"), "{}", time.Minute)
		p.SAdd(ctx, k.Sidecars(), "s1")
		p.Publish(ctx, k.Members(), "update s1")
		return nil
	}); err != nil {
		t.Errorf("the registration transaction: %v", err)
	}
}
