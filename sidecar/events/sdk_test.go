package events

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// sdkModules is the node_modules holding kar-sdk 1.3.10 (scripts/test.sh
// installs the examples' packages); the test skips without it or node.
func sdkModules(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "examples", "service-hello-js", "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "kar-sdk", "index.js")); err != nil {
		t.Skipf("kar-sdk not installed in %s (run scripts/test.sh or npm install there)", dir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not on PATH")
	}
	return dir
}

// h2cServer serves mux over HTTP/1.1 and HTTP/2 with prior knowledge, as
// the sidecar does for kar-sdk.
func h2cServer(t *testing.T, mux *http.ServeMux) *httptest.Server {
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// TestKarSDK drives the routes with kar-sdk's own events functions,
// unmodified, over h2c, and checks what the subscribed actors receive.
func TestKarSDK(t *testing.T) {
	modules := sdkModules(t)
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	mux := http.NewServeMux()
	s.Register(mux)
	srv := h2cServer(t, mux)
	run(t, s)

	script := `
const { events } = require('kar-sdk')
const a = { kar: { type: 'Sub', id: 'sdk' } }
const b = { kar: { type: 'Sub', id: 'sdk-json' } }
const out = {}
const rec = (k, v) => { out[k] = v === undefined ? '<undefined>' : v }
;(async () => {
  rec('create', await events.createTopic('news', { numPartitions: 1 }))
  rec('create again', await events.createTopic('news'))
  rec('subscribe', await events.subscribe(a, 'onNews', 'news'))
  rec('subscribe json', await events.subscribe(b, 'onNews', 'news', { id: 'j', contentType: 'application/json' }))
  rec('get', await events.getSubscription(a, 'news'))
  rec('get all', (await events.getSubscription(b)).map(s => s.id))
  rec('publish', await events.publish('news', { headline: 'hello' }))
  rec('publish ce', await events.publish('news', { specversion: '1.0', id: 'ce-1', source: '/sdk', type: 'sdk.news', data: { headline: 'ce' } }))
  console.log(JSON.stringify(out))
  process.exit(0)
})().catch(err => { console.error(err); process.exit(1) })
`
	got := runNode(t, modules, srv, script)
	want := map[string]any{}
	if err := json.Unmarshal([]byte(`{
		"create": "<undefined>",
		"create again": "Already existed",
		"subscribe": "<undefined>",
		"subscribe json": "<undefined>",
		"get": {"actor": {"Type": "Sub", "ID": "sdk"}, "id": "news", "path": "/onNews", "topic": "news", "group": "", "oldestoffset": false},
		"get all": ["j"],
		"publish": "OK",
		"publish ce": "OK"
	}`), &want); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if g, ok := got[k]; !ok || !reflect.DeepEqual(g, v) {
			t.Errorf("%s: got %#v, want %#v", k, g, v)
		}
	}

	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 4 }, "4 deliveries")
	by := map[string][]string{}
	for _, d := range rec.snapshot() {
		if d.path != "/onNews" {
			t.Errorf("delivered to %s", d.path)
		}
		by[d.actorID] = append(by[d.actorID], d.body)
	}
	// The default subscription gets what was published, as with KAR 1.3.10.
	if d := by["sdk"]; len(d) != 2 || d[0] != `[{"headline":"hello"}]` {
		t.Errorf("default subscription received %q", d)
	} else {
		var args []map[string]any
		if err := json.Unmarshal([]byte(d[1]), &args); err != nil || args[0]["id"] != "ce-1" || args[0]["type"] != "sdk.news" {
			t.Errorf("default subscription received the CloudEvent as %s", d[1])
		}
	}
	if d := by["sdk-json"]; len(d) != 2 || d[0] != `[{"headline":"hello"}]` || d[1] != `[{"headline":"ce"}]` {
		t.Errorf("application/json subscription received %q", d)
	}

	got = runNode(t, modules, srv, `
const { events } = require('kar-sdk')
const a = { kar: { type: 'Sub', id: 'sdk' } }
const b = { kar: { type: 'Sub', id: 'sdk-json' } }
;(async () => {
  const out = {}
  out.cancel = await events.cancelSubscription(a, 'news')
  out.cancelAll = await events.cancelSubscription(b)
  out.after = await events.getSubscription(a)
  out.deleteTopic = await events.deleteTopic('news')
  console.log(JSON.stringify(out))
  process.exit(0)
})().catch(err => { console.error(err); process.exit(1) })
`)
	if !reflect.DeepEqual(got, map[string]any{"cancel": 1.0, "cancelAll": 1.0, "after": []any{}, "deleteTopic": "OK"}) {
		t.Errorf("cancel and delete: %v", got)
	}
}

// runNode runs script with kar-sdk pointed at srv and decodes the JSON it prints.
func runNode(t *testing.T, modules string, srv *httptest.Server, script string) map[string]any {
	t.Helper()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	cmd := exec.Command("node", "-e", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "KAR_RUNTIME_PORT="+strconv.Itoa(port))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node: %v\n%s%s", err, out, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	return got
}
