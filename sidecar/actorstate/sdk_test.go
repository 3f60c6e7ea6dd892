package actorstate

import (
	"encoding/json"
	"github.com/kar-runtime/kar/internal/testenv"
	"net/http"
	"reflect"
	"testing"

	"github.com/kar-runtime/kar/adapter/store"
)

// TestKarSDK drives the routes with kar-sdk's own actor.state functions,
// unmodified, over h2c.
func TestKarSDK(t *testing.T) {
	modules := testenv.KarSDK(t)
	mux := http.NewServeMux()
	Register(mux, newClient(t, startRedis(t)), store.NewKeys("app"))
	srv := testenv.H2CServer(t, mux)

	got := testenv.RunKarSDK(t, modules, srv, `
const { actor } = require('kar-sdk')
const a = { kar: { type: 'Foo', id: 'sdk' } }
const s = actor.state, m = actor.state.submap
const out = {}
const rec = (k, v) => { out[k] = v === undefined ? '<undefined>' : v }
;(async () => {
  rec('get absent', await s.get(a, 'k'))
  rec('set new', await s.set(a, 'k', { x: 1 }))
  rec('set again', await s.set(a, 'k', { x: 2 }))
  rec('get', await s.get(a, 'k'))
  rec('setMultiple', await s.setMultiple(a, { b: 1, c: 's' }))
  rec('getAll', await s.getAll(a))
  rec('removeSome', await s.removeSome(a, ['b', 'zz']))
  rec('remove', await s.remove(a, 'c'))
  rec('remove absent', await s.remove(a, 'c'))
  rec('update', await s.update(a, { updates: { u: null }, submapupdates: { m: { p: 1 } } }))
  rec('submap set', await m.set(a, 'm', 'q', [1]))
  rec('submap get', await m.get(a, 'm', 'q'))
  rec('submap get absent', await m.get(a, 'm', 'none'))
  rec('submap contains', await m.contains(a, 'm', 'q'))
  rec('submap contains absent', await m.contains(a, 'm', 'none'))
  rec('submap getAll', await m.getAll(a, 'm'))
  rec('submap keys', (await m.keys(a, 'm')).sort())
  rec('submap size', await m.size(a, 'm'))
  rec('submap setMultiple', await m.setMultiple(a, 'm', { r: 3 }))
  rec('submap remove', await m.remove(a, 'm', 'r'))
  rec('submap removeSome', await m.removeSome(a, 'm', ['q', 'zz']))
  rec('getAll with submap', await s.getAll(a))
  rec('submap removeAll', await m.removeAll(a, 'm'))
  rec('removeAll', await s.removeAll(a))
  rec('getAll empty', await s.getAll(a))
  console.log(JSON.stringify(out))
  process.exit(0)
})().catch(err => { console.error(err); process.exit(1) })
`)
	want := map[string]any{}
	if err := json.Unmarshal([]byte(`{
		"get absent": "<undefined>",
		"set new": "<undefined>",
		"set again": "<undefined>",
		"get": {"x": 2},
		"setMultiple": 2,
		"getAll": {"k": {"x": 2}, "b": 1, "c": "s"},
		"removeSome": 1,
		"remove": 1,
		"remove absent": 0,
		"update": {"added": 2, "removed": 0},
		"submap set": "<undefined>",
		"submap get": [1],
		"submap get absent": "<undefined>",
		"submap contains": true,
		"submap contains absent": false,
		"submap getAll": {"p": 1, "q": [1]},
		"submap keys": ["p", "q"],
		"submap size": 2,
		"submap setMultiple": 1,
		"submap remove": 1,
		"submap removeSome": 1,
		"getAll with submap": {"k": {"x": 2}, "u": null, "m": {"p": 1}},
		"submap removeAll": 1,
		"removeAll": 2,
		"getAll empty": {}
	}`), &want); err != nil {
		t.Fatal(err)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok || !reflect.DeepEqual(g, w) {
			t.Errorf("%s: got %v, want %v", k, g, w)
		}
	}
}
