package events

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// sdkWorld serves the routes over h2c for kar-sdk, with a running runner
// whose deliveries rec records.
func sdkWorld(t *testing.T) (modules string, rec *recorder, srv *httptest.Server) {
	modules = testenv.KarSDK(t)
	w := newWorld(t)
	rec = &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	mux := http.NewServeMux()
	s.Register(mux)
	srv = testenv.H2CServer(t, mux)
	run(t, s)
	return modules, rec, srv
}

// TestKarSDK drives the routes with kar-sdk's own events functions,
// unmodified, over h2c, and checks what the subscribed actors receive.
func TestKarSDK(t *testing.T) {
	modules, rec, srv := sdkWorld(t)

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

// TestKarSDKGroups: kar-sdk's events.subscribe names no group, so the
// subscription id (kar-sdk's default: the topic) is the group, as in KAR:
// two actors subscribing with the default options share the topic's
// events, and one subscribing with an id of its own gets every event.
func TestKarSDKGroups(t *testing.T) {
	modules, rec, srv := sdkWorld(t)
	const n = 6
	testenv.RunKarSDK(t, modules, srv, `
const { events } = require('kar-sdk')
const actor = id => ({ kar: { type: 'Sub', id } })
;(async () => {
  await events.createTopic('jobs', { numPartitions: 1 })
  await events.subscribe(actor('x'), 'onJob', 'jobs')
  await events.subscribe(actor('y'), 'onJob', 'jobs')
  await events.subscribe(actor('z'), 'onJob', 'jobs', { id: 'every-job' })
  for (let n = 0; n < `+fmt.Sprint(n)+`; n++) await events.publish('jobs', { n })
  console.log('{}')
  process.exit(0)
})().catch(err => { console.error(err); process.exit(1) })
`)
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 2*n }, "%d deliveries", 2*n)
	ds := rec.snapshot()
	if seq := groupSequence(t, ds, "x", "y"); !slices.Equal(seq, seq0(n)) {
		t.Errorf("x and y (one group) got %v, want each of 0..%d once", seq, n-1)
	}
	got := byActor(t, ds)
	if len(got["x"]) != n/2 || len(got["y"]) != n/2 {
		t.Errorf("x got %v and y %v, want half each", got["x"], got["y"])
	}
	if !slices.Equal(got["z"], seq0(n)) {
		t.Errorf("z got %v, want every event", got["z"])
	}
}
