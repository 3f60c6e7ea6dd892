package httpx

import (
	"net/http"
	"reflect"
	"slices"
	"testing"
)

func TestFields(t *testing.T) {
	base := Fields{"Content-Type", "text/plain", "X-Multi", "a", "Traceparent", "t1", "X-Multi", "b"}
	cases := []struct {
		name string
		do   func(f *Fields)
		want Fields
	}{
		{"add", func(f *Fields) { f.Add("X-New", "n") }, append(slices.Clone(base), "X-New", "n")},
		{"set replaces every value", func(f *Fields) { f.Set("X-Multi", "c") },
			Fields{"Content-Type", "text/plain", "Traceparent", "t1", "X-Multi", "c"}},
		{"set a new name", func(f *Fields) { f.Set("Tracestate", "k=v") }, append(slices.Clone(base), "Tracestate", "k=v")},
		{"del", func(f *Fields) { f.Del("X-Multi") }, Fields{"Content-Type", "text/plain", "Traceparent", "t1"}},
		{"del what is not there", func(f *Fields) { f.Del("Nope") }, base},
		{"del on nil", func(f *Fields) { *f = nil; f.Del("X") }, Fields{}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := base.Clone()
			c.do(&f)
			if len(f) != len(c.want) || (len(f) > 0 && !reflect.DeepEqual(f, c.want)) {
				t.Errorf("got %q, want %q", f, c.want)
			}
		})
	}
	if got := base.Get("X-Multi"); got != "a" {
		t.Errorf("Get X-Multi = %q, want the first value", got)
	}
	if base.Get("Nope") != "" || base.Has("Nope") || !base.Has("Traceparent") || base.Len() != 4 {
		t.Errorf("Get/Has/Len wrong on %q", base)
	}
	want := http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}, "Traceparent": {"t1"}}
	if h := base.Header(); !reflect.DeepEqual(h, want) {
		t.Errorf("Header() = %v, want %v", h, want)
	}
}

// Clone and Del never change the Fields they came from: envelopes share
// theirs (a decoded record's, the mesh's default method header).
func TestFieldsCloneIsOwn(t *testing.T) {
	base := Fields{"A", "1", "B", "2"}
	c := base.Clone()
	c.Del("A")
	c.Add("C", "3")
	if !reflect.DeepEqual(base, Fields{"A", "1", "B", "2"}) {
		t.Errorf("base changed to %q", base)
	}
	capped := base[:len(base):len(base)]
	capped.Add("D", "4")
	if !reflect.DeepEqual(base, Fields{"A", "1", "B", "2"}) {
		t.Errorf("Add on a capped slice changed base: %q", base)
	}
}

func TestFieldsOf(t *testing.T) {
	h := http.Header{"Content-Type": {"a"}, "Host": {"x"}, "X-Multi": {"1", "2"}, "lower-case": {"v"}}
	f := FieldsOf(h, "Host")
	if got := f.Header(); !reflect.DeepEqual(got, http.Header{"Content-Type": {"a"}, "X-Multi": {"1", "2"}, "Lower-Case": {"v"}}) {
		t.Errorf("FieldsOf = %q", f)
	}
	// Names canonical already, as net/http's and the fast path's are.
	delete(h, "lower-case")
	if n := testing.AllocsPerRun(100, func() { FieldsOf(h, "Host") }); n != 1 {
		t.Errorf("FieldsOf: %v allocations, want 1 (its slice)", n)
	}
}
