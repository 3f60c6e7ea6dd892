package reminders

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKarSDK drives the routes with kar-sdk's own actor.reminders
// functions, unmodified, over h2c, and fires what it scheduled.
func TestKarSDK(t *testing.T) {
	modules := testenv.KarSDK(t)
	s, _ := newStore(t, backend(t).RedisAddr(), Options{})
	mux := http.NewServeMux()
	Register(mux, s)
	srv := testenv.H2CServer(t, mux)
	rec := &recorder{}
	runScheduler(t, s, rec.fire)

	got := testenv.RunKarSDK(t, modules, srv, `
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
