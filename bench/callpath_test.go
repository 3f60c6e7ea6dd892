package main

import (
	"slices"
	"testing"
	"time"
)

// at is a time of the monotonic clock in microseconds, for the tables.
func at(n int64) int64 { return n * int64(time.Microsecond) }

func reversed(ms []mark) []mark {
	slices.Reverse(ms)
	return ms
}

func TestCallSteps(t *testing.T) {
	// call lays one call's steps out from start, each step d after the last.
	call := func(start int64, d int64) []mark {
		var ms []mark
		for s := range numSteps {
			ms = append(ms, mark{at(start + int64(s)*d), s})
		}
		return ms
	}
	cat := func(parts ...[]mark) []mark {
		var out []mark
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name  string
		marks []mark
		calls int
		first time.Duration // the first call's first step
	}{
		{"two calls, each step 10 us, the second read 10 us after the first's answer",
			cat(call(0, 10), call(100, 10), []mark{{at(200), callerRead}}), 2, 10 * time.Microsecond},
		// Marks of other goroutines (an acknowledgement's read, say) come
		// in between; the sequence skips them.
		{"a stray fetch between the steps",
			cat(call(0, 10), []mark{{at(15), callerFetched}}, []mark{{at(100), callerRead}}), 1, 10 * time.Microsecond},
		{"a call whose server steps were not traced",
			[]mark{{0, callerRead}, {at(10), callerProduced}, {at(80), callerFetched}, {at(90), callerHanded}, {at(95), callerAnswered}, {at(120), callerRead}}, 0, 0},
		{"a request read before the last one was answered",
			cat(call(0, 10)[:5], call(60, 10), []mark{{at(160), callerRead}}), 1, 10 * time.Microsecond},
		// The two sidecars' marks come one trace after the other.
		{"marks out of order", reversed(cat(call(0, 10), []mark{{at(100), callerRead}})), 1, 10 * time.Microsecond},
		{"a step more than a second after the one before",
			cat(call(0, 10)[:3], []mark{{at(2_000_000), serverHanded}}), 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := callSteps(c.marks)
			if len(got) != c.calls {
				t.Fatalf("%d calls, want %d: %v", len(got), c.calls, got)
			}
			if c.calls > 0 && got[0][0] != c.first {
				t.Errorf("first step %s, want %s", got[0][0], c.first)
			}
		})
	}
}
