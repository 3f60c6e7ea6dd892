package mesh

import (
	"reflect"
	"testing"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	cases := []*Envelope{
		{Kind: KindRequest, ID: "a-1", From: "a", FromPart: 7, To: "b", Service: "greeter", Method: "POST", Path: "/helloJson", Query: "x=1&y=2",
			Header: httpx.Fields{"Content-Type", "application/json", "X-Multi", "1", "X-Multi", "2"}, Deadline: 1700000000000, Body: []byte(`{"name":"x"}`)},
		{Kind: KindRequest, ID: "a-2", ActorType: "Counter", ActorID: "c/1", Session: "s", Async: true, MayRepeat: true, Method: "POST", Path: "/incr"},
		{Kind: KindResponse, ID: "a-1", To: "a", Status: 503, Error: true, Body: []byte("no component")},
		{Kind: KindResponse, ID: "ü-∑", Status: 204},
		{Kind: KindRequest, ID: "a-1.1", Service: "s", ActorResult: true, Method: "POST", Path: "/p", Body: []byte(`{}`)},
	}
	for _, want := range cases {
		b, err := want.Encode()
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", want, err)
		}
		if len(want.Body) == 0 {
			want.Body = got.Body[:0]
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
		}
	}
}

// The wire format carries each header name once with all its values, as
// when the envelope held an http.Header: a kar of before reads a record
// of now with no value lost (it kept the last run of a name only).
func TestHeaderNamesOnceOnTheWire(t *testing.T) {
	e := &Envelope{Kind: KindRequest, ID: "x", Header: httpx.Fields{"A", "1", "B", "2", "A", "3"}}
	b, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	r := reader{b: b, i: 18}
	for range 12 {
		r.skip()
	}
	if n := r.uvarint(); n != 2 {
		t.Errorf("%d names on the wire, want 2", n)
	}
	got, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if want := (httpx.Fields{"A", "1", "A", "3", "B", "2"}); !reflect.DeepEqual(got.Header, want) {
		t.Errorf("decoded %q, want %q", got.Header, want)
	}
}

func TestDecodeRejectsGarbage(t *testing.T) {
	good, _ := (&Envelope{Kind: KindRequest, ID: "x", Header: httpx.Fields{"A", "b"}, Body: []byte("body")}).Encode()
	bad := [][]byte{nil, []byte("hello"), []byte(`{"k":"req"}` + "\nbody"), append([]byte{'K', 9}, good[2:]...), good[:20]}
	for _, b := range bad {
		if _, err := Decode(b); err == nil {
			t.Errorf("Decode(%q) accepted garbage", b)
		}
	}
	if _, err := (&Envelope{Kind: "other"}).Encode(); err == nil {
		t.Error("Encode accepted an unknown kind")
	}
}

func FuzzDecode(f *testing.F) {
	good, _ := (&Envelope{Kind: KindRequest, ID: "x", Header: httpx.Fields{"A", "b"}, Body: []byte("body")}).Encode()
	f.Add(good)
	f.Add([]byte("K\x01\x01\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes re-encodes and decodes to the same envelope.
		b2, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Decode(b2); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
	})
}

func TestTracker(t *testing.T) {
	tr := newTracker(10)
	if tr.position() != 10 || !tr.idle() {
		t.Fatal("fresh tracker")
	}
	for _, o := range []int64{10, 11, 13, 14} { // 12 is a gap (compacted away)
		tr.add(o)
	}
	tr.finish(0, 11)
	if tr.position() != 10 {
		t.Errorf("position %d, want 10 while 10 runs", tr.position())
	}
	tr.finish(0, 10)
	if tr.position() != 13 {
		t.Errorf("position %d, want 13", tr.position())
	}
	tr.finish(0, 14)
	tr.finish(0, 13)
	if tr.position() != 15 || !tr.idle() {
		t.Errorf("position %d idle %v, want 15 idle", tr.position(), tr.idle())
	}
}

// After a reset (the broker lost the partition's log), records read
// before it no longer hold the position back, and offsets start over.
func TestTrackerReset(t *testing.T) {
	tr := newTracker(100)
	old := tr.add(100)
	tr.add(101)
	tr.reset(0)
	if tr.position() != 0 || !tr.idle() {
		t.Fatalf("after reset: position %d idle %v, want 0 idle", tr.position(), tr.idle())
	}
	e := tr.add(0)
	tr.finish(old, 100) // finished after the reset: ignored
	if tr.position() != 0 {
		t.Errorf("position %d, want 0 while 0 runs", tr.position())
	}
	tr.finish(e, 0)
	if tr.position() != 1 || !tr.idle() {
		t.Errorf("position %d idle %v, want 1 idle", tr.position(), tr.idle())
	}
}
