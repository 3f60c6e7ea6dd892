package store

import "testing"

// Every key of one application is distinct for distinct names, whatever
// the names hold, and no application's key is another's.
func TestKeysInjective(t *testing.T) {
	seen := map[string]string{}
	add := func(key, what string) {
		t.Helper()
		if prev, ok := seen[key]; ok && prev != what {
			t.Errorf("key %q is both %s and %s", key, prev, what)
		}
		seen[key] = what
	}
	names := []string{"a", "b", "a:b", "b:k", "k", "a%3Ab", "%", ":", "", "a:b:k"}
	for _, app := range []string{"A", "A:B", "B"} {
		if app == "A:B" {
			continue // not a valid application name (config.ValidApp)
		}
		k := NewKeys(app)
		for _, typ := range []string{"T", "T:x", "x"} {
			for _, id := range names {
				add(k.ActorState(typ, id), "state "+app+"/"+typ+"/"+id)
				add(k.Placement(typ, id), "placement "+app+"/"+typ+"/"+id)
				add(k.ActorSubmaps(typ, id), "submaps "+app+"/"+typ+"/"+id)
				for _, sub := range names {
					add(k.ActorSubmap(typ, id, sub), "submap "+app+"/"+typ+"/"+id+"/"+sub)
				}
			}
		}
		for _, id := range names {
			add(k.Response(id), "response "+app+"/"+id)
		}
	}
}

func TestSplitActorRoundTrip(t *testing.T) {
	k := NewKeys("A")
	for _, tc := range [][2]string{{"T", "1"}, {"T", "a:b"}, {"T:x", "%3A"}, {"T", ""}} {
		key := k.Placement(tc[0], tc[1])
		typ, id, ok := SplitActor(key[len(k.PlacementPrefix()):])
		if !ok || typ != tc[0] || id != tc[1] {
			t.Errorf("SplitActor(Placement(%q, %q)) = %q, %q, %v", tc[0], tc[1], typ, id, ok)
		}
	}
}
