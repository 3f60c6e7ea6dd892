package autoscale

import (
	"flag"
	"strings"
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

func TestFlags(t *testing.T) {
	cases := []struct {
		args []string
		want Target
		err  string
	}{
		{[]string{"-app", "a", "-service", "s"}, Target{"a", "service", "s"}, ""},
		{[]string{"-app", "a", "-actors", "T", "-min", "1", "-max", "3", "-target", "2"}, Target{"a", "actor", "T"}, ""},
		{[]string{"-app", "a"}, Target{}, "-service S or -actors T"},
		{[]string{"-service", "s"}, Target{}, "-app is required"},
		{[]string{"-app", "a", "-service", "s", "-actors", "T"}, Target{}, "name one"},
		{[]string{"-app", "a", "-service", "s", "-max", "0"}, Target{}, "max 0"},
		{[]string{"-app", "a", "-service", "s", "-target", "0"}, Target{}, "target in flight"},
		{[]string{"-app", "a", "-service", "s", "-poll", "1ms"}, Target{}, "-poll"},
	}
	for _, c := range cases {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		var f Flags
		f.Register(fs)
		if err := fs.Parse(c.args); err != nil {
			t.Fatal(err)
		}
		got, err := f.Validate()
		if c.err == "" && (err != nil || got != c.want) {
			t.Errorf("%v: %v, %v; want %v", c.args, got, err, c.want)
		}
		if c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)) {
			t.Errorf("%v: %v; want an error saying %q", c.args, err, c.err)
		}
	}
	var f Flags
	f.Register(flag.NewFlagSet("x", flag.ContinueOnError))
	if f.Policy != DefaultPolicy(0, 10, DefaultTargetInFlight) || f.Poll != DefaultPoll {
		t.Errorf("defaults: %+v", f)
	}
}
