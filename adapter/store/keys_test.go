package store

import (
	"context"
	"slices"
	"strings"
	"testing"
)

// names holds the characters the escaping is about: the separator, the
// escape character, the hash-tag braces, and strings that look escaped.
var names = []string{"a", "b", "a:b", "b:k", "k", "a%3Ab", "%", ":", "", "a:b:k", "{", "}", "a}b", "{a}", "%7D", "}:placement", "x/y"}

// allKeys returns every key the scheme makes for app over names, each with
// what it is for.
func allKeys(app string) map[string]string {
	k := NewKeys(app)
	out := map[string]string{}
	add := func(key, what string) { out[key] = what }
	for _, typ := range []string{"T", "T:x", "x", "T}"} {
		for _, id := range names {
			inst := app + "/" + typ + "/" + id
			add(k.ActorState(typ, id), "state "+inst)
			add(k.Placement(typ, id), "placement "+inst)
			add(k.ActorSubmaps(typ, id), "submaps "+inst)
			add(k.Reminders(typ, id), "reminders "+inst)
			for _, sub := range names {
				add(k.ActorSubmap(typ, id, sub), "submap "+inst+"/"+sub)
			}
		}
	}
	for _, id := range names {
		add(k.Response(id), "response "+app+"/"+id)
		add(k.Calls(id), "calls "+app+"/"+id)
		add(k.Attempts(id), "attempts "+app+"/"+id)
	}
	for _, p := range []int32{0, 1, 10} {
		add(k.Lease(p), "lease "+app)
		add(k.Offset(p), "offset "+app)
		add(k.Finished(p), "finished "+app)
	}
	add(k.Sidecars(), "sidecars "+app)
	add(k.Sidecar("s1"), "sidecar "+app)
	add(k.Load("s1"), "load "+app)
	add(k.OrphanScan(), "orphanscan "+app)
	add(k.ReminderSchedule(), "schedule "+app)
	add(k.Subscriptions(), "subscriptions "+app)
	add(k.SubscriptionLease("f"), "subscription lease "+app)
	return out
}

// Every key of one application is distinct for distinct names, whatever
// the names hold, and no application's key is another's.
func TestKeysInjective(t *testing.T) {
	seen := map[string]string{}
	total := 0
	for _, app := range []string{"A", "B", "A.B", "AB", "A_a"} {
		keys := allKeys(app)
		total += len(keys)
		for key, what := range keys {
			if prev, ok := seen[key]; ok && prev != what {
				t.Errorf("key %q is both %s and %s", key, prev, what)
			}
			seen[key] = what
		}
	}
	if len(seen) != total {
		t.Errorf("%d keys for %d purposes", len(seen), total)
	}
}

// tag is the part of key Redis Cluster hashes: between the first '{' and
// the first '}' after it, when that is not empty; else the whole key.
func tag(key string) string {
	_, rest, ok := strings.Cut(key, "{")
	if !ok {
		return key
	}
	t, _, ok := strings.Cut(rest, "}")
	if !ok || t == "" {
		return key
	}
	return t
}

// What one script or transaction touches shares a hash tag (one slot of a
// Redis Cluster), and what is independent does not: instances, partitions
// and requests spread over the cluster.
func TestKeysHashTags(t *testing.T) {
	k := NewKeys("A")
	cases := []struct {
		name      string
		together  []string // keys that must share one tag
		elsewhere []string // keys whose tags must differ from it
	}{
		{"actor instance", []string{k.ActorState("T", "1"), k.Placement("T", "1"), k.ActorSubmaps("T", "1"), k.ActorSubmap("T", "1", "m"), k.ActorSubmap("T", "1", "}"), k.Reminders("T", "1")},
			[]string{k.ActorState("T", "2"), k.ActorState("U", "1"), k.Placement("T", "11"), k.Sidecars(), k.ReminderSchedule(), k.Lease(0)}},
		{"instance with braces in its name", []string{k.ActorState("T}", "{1}"), k.Placement("T}", "{1}"), k.ActorSubmap("T}", "{1}", "{")},
			[]string{k.ActorState("T}", "{2}"), k.ActorState("T", "1")}},
		{"partition", []string{k.Lease(3), k.Offset(3)}, []string{k.Lease(4), k.Offset(30), k.Sidecars()}},
		{"request", []string{k.Calls("r1"), k.Attempts("r1"), k.Response("r1")}, []string{k.Calls("r2"), k.ActorState("r", "1")}},
		{"application index", []string{k.Sidecars(), k.Sidecar("s1"), k.Load("s1"), k.Members(), k.ReminderSchedule(), k.ReminderWake(),
			k.Subscriptions(), k.SubscriptionOffsets("g"), k.SubscriptionLease("g"), k.SubscriptionRunners(), k.SubscriptionWake()},
			[]string{NewKeys("B").Sidecars(), NewKeys("AB").Sidecars()}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := tag(tc.together[0])
			if !strings.HasPrefix(want, "A") {
				t.Errorf("tag %q of %q does not start with the application", want, tc.together[0])
			}
			for _, key := range tc.together {
				if got := tag(key); got != want {
					t.Errorf("tag(%q) = %q, want %q", key, got, want)
				}
			}
			for _, key := range tc.elsewhere {
				if got := tag(key); got == want {
					t.Errorf("tag(%q) = %q, shared with %q", key, got, tc.together[0])
				}
			}
		})
	}
}

func TestParseActorRoundTrip(t *testing.T) {
	k := NewKeys("A")
	for _, typ := range []string{"T", "T:x", "T}"} {
		for _, id := range names {
			for _, key := range []string{k.Placement(typ, id), k.ActorState(typ, id), k.ActorSubmap(typ, id, "m:}")} {
				gt, gi, ok := k.ParseActor(key)
				if !ok || gt != typ || gi != id {
					t.Errorf("ParseActor(%q) = %q, %q, %v; want %q, %q", key, gt, gi, ok, typ, id)
				}
			}
		}
	}
	for _, key := range []string{NewKeys("B").Placement("T", "1"), k.Lease(1), k.Sidecars(), "kar:{A:a:T}:state", "kar:{A:a:T:1:2}:state"} {
		if typ, id, ok := k.ParseActor(key); ok {
			t.Errorf("ParseActor(%q) = %q, %q, true; want not ok", key, typ, id)
		}
	}
}

// The SCAN patterns find what they say, in Redis's own glob (here the
// embedded Redis-protocol server, which implements it), and nothing of
// another application.
func TestKeysPatterns(t *testing.T) {
	mr, rdb := miniClient(t)
	ctx := context.Background()
	apps := []string{"A", "AB", "A.B", "B"}
	for _, app := range apps {
		for key := range allKeys(app) {
			mr.Set(key, "1")
		}
	}
	k := NewKeys("A")
	scan := func(patterns ...string) []string {
		var out []string
		for _, p := range patterns {
			iter := rdb.Scan(ctx, 0, p, 1000).Iterator()
			for iter.Next(ctx) {
				out = append(out, iter.Val())
			}
			if err := iter.Err(); err != nil {
				t.Fatal(err)
			}
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	want := func(pred func(key, what string) bool) []string {
		var out []string
		for key, what := range allKeys("A") {
			if pred(key, what) {
				out = append(out, key)
			}
		}
		slices.Sort(out)
		return out
	}
	kind := func(kinds ...string) func(string, string) bool {
		return func(_, what string) bool {
			return slices.Contains(kinds, strings.SplitN(what, " ", 2)[0])
		}
	}
	for _, tc := range []struct {
		name string
		got  []string
		want []string
	}{
		{"Pattern", scan(k.Pattern()), want(func(string, string) bool { return true })},
		{"PlacementPattern", scan(k.PlacementPattern()), want(kind("placement"))},
		{"StatePattern", scan(k.StatePattern()), want(kind("state"))},
		{"Runtime", scan(k.Runtime()...), want(kind("placement", "lease", "offset", "finished", "response", "calls", "attempts"))},
	} {
		if !slices.Equal(tc.got, tc.want) {
			t.Errorf("%s: found %d keys, want %d\nextra: %q\nmissing: %q", tc.name, len(tc.got), len(tc.want), minus(tc.got, tc.want), minus(tc.want, tc.got))
		}
	}
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
