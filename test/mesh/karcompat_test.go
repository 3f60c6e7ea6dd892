package mesh_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKARRunFlags: a KAR 1.3.10 command line runs under kar (KAR's
// actors-ykt example starts its server with -actor_reminder_interval): the
// flags kar gives a meaning take effect, the others each warn on one line,
// and the component gets KAR_REQUEST_TIMEOUT in milliseconds as KAR exports it.
func TestKARRunFlags(t *testing.T) {
	b := testenv.Backend(t)
	p := testenv.Start(t, "karflags", karEnv(b), "", testenv.KarBin(t), "run", "-app", "karflags",
		"-actor_reminder_interval", "100ms", "-actor_reminder_acceptable_delay", "3s", "-request_retry_limit", "30s",
		"-hostname", "ykt-host", "-kubernetes_mode", "-placement_cache", "-redis_slow_op_threshold", "2s", "-v", "warning",
		"sh", "-c", `echo "timeout=$KAR_REQUEST_TIMEOUT"; while [ ! -e /nonexistent-stop ]; do sleep 0.05; done`)
	p.WaitOutput(t, "[STDOUT] timeout=30000", 20*time.Second)
	for _, f := range []string{"-kubernetes_mode", "-placement_cache", "-redis_slow_op_threshold"} {
		if n := strings.Count(p.Output(), f+" ("); n != 1 {
			t.Errorf("%d warning lines about %s, want 1:\n%s", n, f, p.Output())
		}
	}
	// -hostname is the host in the sidecar's registration.
	rdb, err := store.Connect(context.Background(), backendConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	keys := store.NewKeys("karflags")
	testenv.Eventually(t, 20*time.Second, func() bool {
		ids, _ := rdb.SMembers(context.Background(), keys.Sidecars()).Result()
		for _, id := range ids {
			var m struct{ Host string }
			s, _ := rdb.Get(context.Background(), keys.Sidecar(id)).Result()
			if json.Unmarshal([]byte(s), &m) == nil && m.Host == "ykt-host" {
				return true
			}
		}
		return false
	}, "a registration with host ykt-host")
	p.Kill()

	// kar-sdk's spellings of the shared variables: milliseconds and true/false.
	p2 := testenv.Start(t, "sdkenv", karEnv(b, "KAR_REQUEST_TIMEOUT=25000", "KAR_VERBOSE=true"), "", testenv.KarBin(t), "run", "-app", "karflags",
		"sh", "-c", `echo "timeout=$KAR_REQUEST_TIMEOUT verbose=$KAR_VERBOSE"`)
	if code, err := p2.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("kar run with KAR_REQUEST_TIMEOUT=25000 KAR_VERBOSE=true: exit %d, %v\n%s", code, err, p2.Output())
	}
	if !strings.Contains(p2.Output(), "[STDOUT] timeout=25000 verbose=true") {
		t.Errorf("component environment:\n%s", p2.Output())
	}
	// A password on the command line works, with a warning that never shows it.
	pw := karEnv(b)
	p3 := testenv.Start(t, "pwflag", pw, "", testenv.KarBin(t), "run", "-app", "karflags", "-redis_password", "", "-kafka_password", "", "true")
	if code, err := p3.Wait(30 * time.Second); err != nil || code != 0 || strings.Count(p3.Output(), "visible to every user") != 2 {
		t.Errorf("password flags: exit %d, %v\n%s", code, err, p3.Output())
	}
}

// TestSystemInformation: GET /kar/v1/system/information/{id,sidecars,actors,
// sidecar_actors} answer in KAR's shapes, through the REST API and through
// kar-sdk's sys.get; kar get lists actors by default, as KAR does.
func TestSystemInformation(t *testing.T) {
	b := testenv.Backend(t)
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	hostPort := testenv.FreePort(t)
	host := testenv.Start(t, "host", karEnv(b, "NODE_PATH="+nodeModules), filepath.Join(repo(t), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", "info", "-actors", "Counter", "-h2c", "-app_port", strconv.Itoa(testenv.FreePort(t)),
		"-runtime_port", strconv.Itoa(hostPort), "-v", "info", "node", "actors.js")
	host.WaitOutput(t, "actors ready", 30*time.Second)
	hostBase := "http://127.0.0.1:" + strconv.Itoa(hostPort)
	_, base := sidecarAlone(t, b, "info")
	value(t, base, "a", "incr", 2)
	value(t, base, "b", "incr", 1)

	asJSON := http.Header{"Accept": {"application/json"}}
	get := func(base, what string, h http.Header) (int, string, string) {
		resp, body := do(t, "GET", base+"/kar/v1/system/information/"+what, h, "")
		return resp.StatusCode, resp.Header.Get("Content-Type"), body
	}
	status, ctype, body := get(base, "actors", asJSON)
	if status != 200 || ctype != "application/json" || strings.Join(strings.Fields(body), "") != `{"Counter":["a","b"]}` {
		t.Errorf("actors: %d %s %s", status, ctype, body)
	}
	if status, ctype, body = get(base, "actors", nil); status != 200 || ctype != "text/plain" || body != "Counter: [\n    a\n    b\n]\n" {
		t.Errorf("actors as text: %d %s %q", status, ctype, body)
	}
	if _, _, body = get(hostBase, "sidecar_actors", asJSON); strings.Join(strings.Fields(body), "") != `{"Counter":["a","b"]}` {
		t.Errorf("sidecar_actors of the host: %s", body)
	}
	if _, _, body = get(base, "sidecar_actors", asJSON); strings.TrimSpace(body) != "{}" {
		t.Errorf("sidecar_actors of a sidecar hosting nothing: %s", body)
	}
	var id struct{ ID string }
	if _, _, body = get(hostBase, "id", asJSON); json.Unmarshal([]byte(body), &id) != nil || id.ID == "" {
		t.Fatalf("id: %s", body)
	}
	if _, ctype, body = get(hostBase, "id", nil); body != id.ID+"\n" || ctype != "text/plain" {
		t.Errorf("id as text: %s %q", ctype, body)
	}
	var sidecars map[string]struct {
		Port     int
		Actors   []string
		Services []string
	}
	if _, _, body = get(base, "sidecars", asJSON); json.Unmarshal([]byte(body), &sidecars) != nil || sidecars[id.ID].Port != hostPort || strings.Join(sidecars[id.ID].Actors, ",") != "Counter" {
		t.Errorf("sidecars: %s", body)
	}
	if _, _, body = get(base, "sidecars", nil); !strings.HasPrefix(body, "\nSidecar\n : Actors\n : Services\n") || !strings.Contains(body, id.ID+":"+strconv.Itoa(hostPort)+"\n : [Counter]\n : []") {
		t.Errorf("sidecars as text: %q", body)
	}
	if status, _, body = get(base, "bogus", nil); status != 400 || !strings.Contains(body, "Invalid information query") {
		t.Errorf("bogus: %d %s", status, body)
	}

	// kar-sdk's sys.get, as an application calls it.
	line := runSDK(t, b, "info", `const out = {}
  for (const q of ['actors', 'sidecar_actors', 'id', 'sidecars']) out[q] = await kar.sys.get(q)
  return out`)
	var got struct {
		Actors        map[string][]string `json:"actors"`
		SidecarActors map[string][]string `json:"sidecar_actors"`
		ID            struct{ ID string } `json:"id"`
		Sidecars      map[string]any      `json:"sidecars"`
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil || strings.Join(got.Actors["Counter"], ",") != "a,b" || len(got.SidecarActors) != 0 || got.ID.ID == "" || got.Sidecars[id.ID] == nil || got.Sidecars[got.ID.ID] == nil {
		t.Errorf("sys.get: %v %s", err, line)
	}

	// kar get: actors by default, in KAR's text; -o json is JSON alone.
	env := karEnv(b)
	if out, code := karCmd(t, env, "get", "-app", "info"); code != 0 || out != "Listing all known actor instances:\nCounter: [\n    a\n    b\n]\n\n" {
		t.Errorf("kar get: %d %q", code, out)
	}
	if out, code := karCmd(t, env, "get", "-app", "info", "-mr", "-o", "json"); code != 0 || strings.Join(strings.Fields(out), "") != `{"Counter":["a","b"]}` {
		t.Errorf("kar get -mr -o json: %d %q", code, out)
	}
	if out, code := karCmd(t, env, "get", "-app", "info", "-t", "Counter", "-i", "a"); code != 0 || !strings.HasPrefix(out, "Persisted state of actor Counter[a] is:\n{\n  \"count\": 2\n}") {
		t.Errorf("kar get -i: %d %q", code, out)
	}
	if out, code := karCmd(t, env, "get", "-app", "info", "-t", "Counter", "-i", "zz"); code != 0 || out != "Actor Counter[zz] has no persisted state\n" {
		t.Errorf("kar get -i of a stateless actor: %d %q", code, out)
	}
	if out, code := karCmd(t, env, "get", "-app", "info", "-s", "sidecars", "-o", "json"); code != 0 || !strings.Contains(out, id.ID) {
		t.Errorf("kar get -s sidecars -o json: %d %q", code, out)
	}
}

// TestKARRestOutput: kar rest prints as KAR prints (the body of a 200, two
// [STDERR] lines for any other status, exit 0 after both); -o json keeps
// kar's exit code 1 on an error status for scripts.
func TestKARRestOutput(t *testing.T) {
	b := testenv.Backend(t)
	startService(t, b, "server", "restout", "greeter", needNodeExample(t, "service-hello-js"), "node", "server.js")
	out, errOut, code := rest(t, b, "-app", "restout", "post", "greeter", "helloJson", `{"name":"KAR"}`)
	if code != 0 || out != `{"greetings":"Hello KAR!"}`+"\n" || errOut != "" {
		t.Errorf("kar rest: %d %q %q", code, out, errOut)
	}
	out, errOut, code = rest(t, b, "-app", "restout", "get", "greeter", "no-such-path")
	if code != 0 || out != "" || !strings.HasPrefix(errOut, "[STDERR] HTTP status: 404\n[STDERR] ") {
		t.Errorf("kar rest of a missing path: %d %q %q", code, out, errOut)
	}
	if _, errOut, code = rest(t, b, "-app", "restout", "-o", "json", "get", "greeter", "no-such-path"); code != 1 || !strings.Contains(errOut, "404") {
		t.Errorf("kar rest -o json of a missing path: %d %q", code, errOut)
	}
}

// TestCtrlC: kar run interrupted by Ctrl-C exits 0 when the component ended
// from the signal, as KAR does: Ctrl-C in a terminal signals kar and the
// component together (the process group); a supervisor signals kar alone.
func TestCtrlC(t *testing.T) {
	b := testenv.Backend(t)
	cases := []struct {
		name    string
		group   bool   // Ctrl-C in a terminal: kar and the component at once
		waitFor string // when to interrupt
	}{
		{"terminal, after the join", true, "msg=joined"},
		{"kar alone, after the join", false, "msg=joined"},
		{"terminal, as soon as the component runs", true, "[STDOUT] ready"},
	}
	for _, c := range cases {
		p := testenv.Start(t, "ctrlc", karEnv(b), "", testenv.KarBin(t), "run", "-app", "ctrlc", "-v", "info",
			"node", "-e", `console.log('ready'); setInterval(() => {}, 1000)`)
		p.WaitOutput(t, c.waitFor, 20*time.Second)
		if c.group {
			syscall.Kill(-p.PID(), syscall.SIGINT)
		} else {
			p.Signal(syscall.SIGINT)
		}
		if code, err := p.Wait(20 * time.Second); err != nil || code != 0 {
			t.Errorf("%s: exit %d, %v\n%s", c.name, code, err, p.Output())
		}
	}
}

// TestMigrateFromKAR: data that KAR 1.3.10 left in Redis (written here with
// plain Redis commands in KAR's layout) is copied by `kar migrate` and read
// back by kar-sdk through `kar run`; a second run copies nothing.
func TestMigrateFromKAR(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	rdb, err := store.Connect(ctx, backendConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	target := time.Now().Add(2 * time.Hour).UTC().Format("2006-01-02T15:04:05.5Z07:00")
	for key, fields := range map[string][]string{
		"kar_ykt_main_state_Cart_c1":                     {"total__", "42", "items_sku1", `{"qty":2}`, "items_sku2", `3`},
		"kar_ykt_binding_0_reminders_Cart_c1_r1":         {"actorType", "Cart", "actorId", "c1", "id", "r1", "path", "/checkout", "targetTime", target, "period", "1m0s", "encodedData", `["hi"]`},
		"kar_ykt_binding_0_subscriptions_Cart_c1_orders": {"path", "/onOrder", "topic", "orders", "contentType", "application/json"},
	} {
		if err := rdb.HSet(ctx, key, fields).Err(); err != nil {
			t.Fatal(err)
		}
	}
	env := karEnv(b)
	if out, code := karCmd(t, env, "migrate", "-app", "ykt", "-dry-run"); code != 0 || !strings.Contains(out, "would copy 1 actors (3 state entries), 1 reminders, 1 subscriptions") {
		t.Fatalf("kar migrate -dry-run: %d %s", code, out)
	}
	if n, _ := rdb.Keys(ctx, store.NewKeys("ykt").Pattern()).Result(); len(n) != 0 {
		t.Fatalf("a dry run wrote %v", n)
	}
	if out, code := karCmd(t, env, "migrate", "-app", "ykt"); code != 0 || !strings.Contains(out, "copied 1 actors (3 state entries), 1 reminders, 1 subscriptions") {
		t.Fatalf("kar migrate: %d %s", code, out)
	}
	if out, code := karCmd(t, env, "migrate", "-app", "ykt"); code != 0 || !strings.Contains(out, "copied 0 actors (0 state entries), 0 reminders, 0 subscriptions; already in kar: 1 actors, 1 reminders, 1 subscriptions") {
		t.Fatalf("kar migrate again: %d %s", code, out)
	}

	line := runSDK(t, b, "ykt", `const c = kar.actor.proxy('Cart', 'c1')
  return {
    state: await kar.actor.state.getAll(c),
    sku1: await kar.actor.state.submap.get(c, 'items', 'sku1'),
    reminder: await kar.actor.reminders.get(c, 'r1'),
    subscription: await kar.events.getSubscription(c, 'orders')
  }`)
	var got struct {
		State        map[string]any
		Sku1         map[string]any
		Reminder     map[string]any
		Subscription map[string]any
	}
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	if s, _ := json.Marshal(got.State); string(s) != `{"items":{"sku1":{"qty":2},"sku2":3},"total":42}` {
		t.Errorf("state: %s", s)
	}
	if got.Sku1["qty"] != 2.0 || got.Reminder["path"] != "/checkout" || got.Reminder["period"] != float64(time.Minute) ||
		got.Subscription["topic"] != "orders" || got.Subscription["path"] != "/onOrder" {
		t.Errorf("read back: %s", line)
	}
}

// runSDK runs body (the inside of an async function of kar, the kar-sdk
// module, returning a value) as a component of app under kar run, and
// returns the JSON of the value.
func runSDK(t *testing.T, b *devenv.Backend, app, body string) string {
	t.Helper()
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	script := "const kar = require('kar-sdk');\n(async () => {\n  " + body + `
})().then(v => { console.log('result=' + JSON.stringify(v)); process.exit(0) }, e => { console.log('failed ' + e); process.exit(1) })`
	p := testenv.Start(t, "sdk", karEnv(b, "NODE_PATH="+nodeModules), "", testenv.KarBin(t), "run", "-app", app, "node", "-e", script)
	if code, err := p.Wait(60 * time.Second); err != nil || code != 0 || !strings.Contains(p.Output(), "result=") {
		t.Fatalf("kar-sdk script: %d %v\n%s", code, err, p.Output())
	}
	line := p.Output()[strings.Index(p.Output(), "result=")+7:]
	return line[:strings.IndexByte(line, '\n')]
}

// TestIdleActorsDeactivated: with the default -actor_collector_interval
// (10s, as in KAR) an idle instance is deactivated within two intervals:
// kar-sdk's deactivate() runs, and the instance is no longer active.
func TestIdleActorsDeactivated(t *testing.T) {
	b := testenv.Backend(t)
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	hostPort := testenv.FreePort(t)
	host := testenv.Start(t, "host", karEnv(b, "NODE_PATH="+nodeModules), filepath.Join(repo(t), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", "idle", "-actors", "Counter", "-h2c", "-app_port", strconv.Itoa(testenv.FreePort(t)),
		"-runtime_port", strconv.Itoa(hostPort), "node", "actors.js")
	host.WaitOutput(t, "actors ready", 30*time.Second)
	base := "http://127.0.0.1:" + strconv.Itoa(hostPort)
	start := time.Now()
	value(t, base, "a", "incr", 1)
	host.WaitOutput(t, "[STDOUT] deactivate a", 25*time.Second)
	if d := time.Since(start); d < 9*time.Second {
		t.Errorf("deactivated after %s, before the 10s interval", d)
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		_, body := do(t, "GET", base+"/kar/v1/system/information/sidecar_actors", http.Header{"Accept": {"application/json"}}, "")
		return strings.TrimSpace(body) == "{}"
	}, "no active instance after the deactivation")
	// The state it saved is there when it is activated again.
	if v := value(t, base, "a", "incr", 1); v != 2.0 {
		t.Errorf("after reactivation: %v", v)
	}
}
