package autoscale

import (
	"testing"

	"github.com/kar-runtime/kar/sidecar"
)

func TestInputFor(t *testing.T) {
	l := &sidecar.MeshLoad{
		Targets: []sidecar.TargetLoad{
			{Type: "service", Name: "orders", Members: 2, InFlight: 4},
			{Type: "service", Name: "billing", Held: 3},
			{Type: "actor", Name: "orders", Members: 1, InFlight: 9},
		},
		Partitions: []sidecar.PartitionLoad{
			{Partition: 0, Owner: "a", Unread: 5},
			{Partition: 1, Unread: 2},
			{Partition: 2, Unread: 1},
		},
	}
	cases := []struct {
		typ, name string
		want      Input
	}{
		{"service", "orders", Input{Members: 2, InFlight: 4, Orphaned: 3}},
		{"service", "billing", Input{Held: 3, Orphaned: 3}},
		{"actor", "orders", Input{Members: 1, InFlight: 9, Orphaned: 3}},
		{"service", "unknown", Input{Orphaned: 3}},
	}
	for _, c := range cases {
		if got := InputFor(l, c.typ, c.name); got != c.want {
			t.Errorf("InputFor(%s %s) = %+v, want %+v", c.typ, c.name, got, c.want)
		}
	}
}

func TestTargetValidate(t *testing.T) {
	cases := []struct {
		t  Target
		ok bool
	}{
		{Target{"a", "service", "s"}, true},
		{Target{"a", "actor", "T"}, true},
		{Target{"", "service", "s"}, false},
		{Target{"a", "job", "s"}, false},
		{Target{"a", "service", ""}, false},
	}
	for _, c := range cases {
		if err := c.t.Validate(); (err == nil) != c.ok {
			t.Errorf("%v: %v, want ok=%v", c.t, err, c.ok)
		}
	}
}
