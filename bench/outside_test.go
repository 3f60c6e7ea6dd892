package main

import (
	"testing"
	"time"
)

func TestWrkMedian(t *testing.T) {
	for _, c := range []struct {
		name, out string
		want      time.Duration
		err       bool
	}{
		{"microseconds", "  Latency Distribution\n     50%   57.00us\n     75%   60.00us\n", 57 * time.Microsecond, false},
		{"milliseconds", "     50%    1.25ms\n     99%    3.00ms\n", 1250 * time.Microsecond, false},
		{"seconds", "     50%    2.00s\n", 2 * time.Second, false},
		{"no distribution", "Running 1s test @ http://127.0.0.1:1/\n", 0, true},
		{"no unit", "     50%   57.00\n", 0, true},
		{"not a number", "     50%   fastus\n", 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := wrkMedian([]byte(c.out))
			if (err != nil) != c.err {
				t.Fatalf("err = %v, want an error: %v", err, c.err)
			}
			if got != c.want {
				t.Errorf("median = %v, want %v", got, c.want)
			}
		})
	}
}
