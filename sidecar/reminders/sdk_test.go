package reminders

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
	"strings"
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

// TestKarSDK drives the routes with kar-sdk's own actor.reminders
// functions, unmodified, over h2c, and fires what it scheduled.
func TestKarSDK(t *testing.T) {
	modules := sdkModules(t)
	s, _ := newStore(t, backend(t).RedisAddr(), Options{})
	mux := http.NewServeMux()
	Register(mux, s)
	srv := h2cServer(t, mux)
	rec := &recorder{}
	runScheduler(t, s, rec.fire)

	got := runNode(t, modules, srv, `
const { actor } = require('kar-sdk')
const a = { kar: { type: 'Foo', id: 'sdk' } }
const r = actor.reminders
const out = {}
const rec = (k, v) => { out[k] = v === undefined ? '<undefined>' : v }
;(async () => {
  rec('get absent', await r.get(a, 'later'))
  rec('get all empty', await r.get(a))
  rec('schedule', await r.schedule(a, 'remind', { id: 'later', targetTime: new Date(Date.UTC(2120, 0, 1)), period: '5s' }, 'x', 1))
  rec('schedule now', await r.schedule(a, 'ping', { id: 'now', targetTime: new Date() }, { n: 7 }))
  rec('get', await r.get(a, 'later'))
  rec('get all', (await r.get(a)).map(x => x.id).filter(id => id === 'later'))
  rec('cancel', await r.cancel(a, 'later'))
  rec('cancel absent', await r.cancel(a, 'later'))
  rec('cancel all', await r.cancel(a))
  console.log(JSON.stringify(out))
  process.exit(0)
})().catch(err => { console.error(err); process.exit(1) })
`)
	want := map[string]any{}
	if err := json.Unmarshal([]byte(`{
		"get absent": null,
		"get all empty": [],
		"schedule": "<undefined>",
		"schedule now": "<undefined>",
		"get": {"Actor": {"Type": "Foo", "ID": "sdk"}, "id": "later", "path": "/remind",
		        "targetTime": "2120-01-01T00:00:00Z", "period": 5000000000, "encodedData": "[\"x\",1]"},
		"get all": ["later"],
		"cancel": 1,
		"cancel absent": 0
	}`), &want); err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("%s: got %#v, want %#v", k, g, w)
		}
	}
	// "now" may have fired (and been removed) before the cancel-all.
	if c := got["cancel all"]; c != 0.0 && c != 1.0 {
		t.Errorf("cancel all: got %v, want 0 or 1", c)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return rec.count("now") == 1 }, "the reminder due now fires")
	f := rec.snapshot()[0]
	if f.r.Path != "/ping" || f.r.EncodedData != `[{"n":7}]` || !strings.Contains(f.r.Actor.ID, "sdk") {
		t.Errorf("fired %+v", f.r)
	}
}
