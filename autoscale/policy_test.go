package autoscale

import (
	"testing"
	"time"
)

func TestWant(t *testing.T) {
	p := Policy{TargetInFlight: 10, Min: 0, Max: 5}
	cases := []struct {
		name string
		p    Policy
		in   Input
		want int
	}{
		{"idle scales to zero", p, Input{Members: 2}, 0},
		{"held with no member wakes one", p, Input{Held: 1}, 1},
		{"held beyond the target wakes more", p, Input{Held: 25}, 3},
		{"in flight divided by the target, rounded up", p, Input{Members: 1, InFlight: 11}, 2},
		{"in flight and held add up", p, Input{Members: 1, InFlight: 10, Held: 10}, 2},
		{"capped at max", p, Input{Members: 5, InFlight: 500}, 5},
		{"floored at min", Policy{TargetInFlight: 10, Min: 2, Max: 5}, Input{}, 2},
		{"orphaned records wake a target with no replica", p, Input{Orphaned: 3}, 1},
		{"orphaned records do not grow a target that has replicas", p, Input{Members: 1, InFlight: 1, Orphaned: 300}, 1},
		{"target of one: a replica per request", Policy{TargetInFlight: 1, Max: 64}, Input{Members: 3, InFlight: 64}, 64},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.p.Want(c.in); got != c.want {
				t.Errorf("Want(%+v) = %d, want %d", c.in, got, c.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	cases := []struct {
		name string
		p    Policy
		ok   bool
	}{
		{"defaults", DefaultPolicy(0, 4, 10), true},
		{"zero target", Policy{Max: 1}, false},
		{"negative min", Policy{TargetInFlight: 1, Min: -1, Max: 1}, false},
		{"max below min", Policy{TargetInFlight: 1, Min: 3, Max: 2}, false},
		{"max zero", Policy{TargetInFlight: 1}, false},
		{"negative window", Policy{TargetInFlight: 1, Max: 1, Cooldown: -time.Second}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.p.Validate(); (err == nil) != c.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, c.ok)
			}
		})
	}
}

// TestScalerOverTime plays a load against the scaler second by second:
// scale-up is immediate, scale-down waits for the window, zero for the
// cooldown after the last work.
func TestScalerOverTime(t *testing.T) {
	p := Policy{TargetInFlight: 10, Min: 0, Max: 8, ScaleDownWindow: 30 * time.Second, Cooldown: 60 * time.Second}
	type step struct {
		at   int // seconds
		in   Input
		want int
	}
	cases := []struct {
		name  string
		steps []step
	}{
		{"idle from the start stays at zero", []step{{0, Input{}, 0}, {1, Input{}, 0}}},
		{"from zero to one on a held request, at once", []step{{0, Input{}, 0}, {1, Input{Held: 1}, 1}}},
		{"up at once, down after the window", []step{
			{0, Input{Members: 1, InFlight: 40}, 4},
			{1, Input{Members: 4, InFlight: 80}, 8},
			{2, Input{Members: 8, InFlight: 10}, 8},  // the window remembers 8
			{31, Input{Members: 8, InFlight: 10}, 8}, // 8 was wanted 29 s ago
			{32, Input{Members: 8, InFlight: 10}, 1}, // out of the window
		}},
		{"to zero only after the cooldown", []step{
			{0, Input{Members: 1, InFlight: 5}, 1},
			{1, Input{Members: 1}, 1},
			{40, Input{Members: 1}, 1}, // window passed, cooldown not
			{59, Input{Members: 1}, 1},
			{60, Input{Members: 1}, 0},
		}},
		{"work during the cooldown restarts it", []step{
			{0, Input{Members: 1, InFlight: 5}, 1},
			{50, Input{Members: 1, Held: 1}, 1},
			{100, Input{Members: 1}, 1},
			{110, Input{Members: 1}, 0},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := NewScaler(p)
			if err != nil {
				t.Fatal(err)
			}
			t0 := time.Unix(1_700_000_000, 0)
			for _, st := range c.steps {
				if got := s.Next(t0.Add(time.Duration(st.at)*time.Second), st.in); got != st.want {
					t.Fatalf("at %ds with %+v: %d replicas, want %d", st.at, st.in, got, st.want)
				}
			}
		})
	}
	t.Run("no windows", func(t *testing.T) {
		s, err := NewScaler(Policy{TargetInFlight: 10, Max: 8})
		if err != nil {
			t.Fatal(err)
		}
		t0 := time.Unix(0, 0)
		for i, st := range []struct {
			in   Input
			want int
		}{{Input{InFlight: 30}, 3}, {Input{InFlight: 10}, 1}, {Input{}, 0}} {
			if got := s.Next(t0.Add(time.Duration(i)*time.Second), st.in); got != st.want {
				t.Fatalf("step %d: %d, want %d", i, got, st.want)
			}
		}
	})
}

func TestInputLoad(t *testing.T) {
	if l := (Input{Members: 0, InFlight: 1, Held: 2, Orphaned: 3}).Load(); l != 6 {
		t.Errorf("no members: load %d, want 6", l)
	}
	if l := (Input{Members: 1, InFlight: 1, Held: 2, Orphaned: 3}).Load(); l != 3 {
		t.Errorf("a member: load %d, want 3", l)
	}
}
