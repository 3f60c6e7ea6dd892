package events

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKarSDK drives the routes with kar-sdk's own events functions,
// unmodified, over h2c, and checks what the subscribed actors receive.
func TestKarSDK(t *testing.T) {
	modules := testenv.KarSDK(t)
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	mux := http.NewServeMux()
	s.Register(mux)
	srv := testenv.H2CServer(t, mux)
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
	got := testenv.RunKarSDK(t, modules, srv, script)
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

	got = testenv.RunKarSDK(t, modules, srv, `
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
