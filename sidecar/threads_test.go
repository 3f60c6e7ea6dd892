package sidecar

import "testing"

func TestThreadsFollowTheLoad(t *testing.T) {
	for _, tc := range []struct {
		name string
		busy []float64 // cores busy, one per period
		want []int     // next's answer for each
	}{
		{"idle stays on one thread", []float64{0, 0.1, 0.5, 0.74}, []int{0, 0, 0, 0}},
		{"a busy core raises at once", []float64{0.2, 0.8}, []int{0, 4}},
		{"back to one after five calm periods", []float64{0.9, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3}, []int{4, 0, 0, 0, 0, 1, 0}},
		{"a busy period between lulls keeps the threads", []float64{0.9, 0.3, 0.3, 0.3, 0.5, 0.3, 0.3, 0.3, 0.3}, []int{4, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"raised again after lowering", []float64{0.9, 0, 0, 0, 0, 0, 1.2}, []int{4, 0, 0, 0, 0, 1, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			th := threads{max: 4}
			for i, b := range tc.busy {
				if got := th.next(b); got != tc.want[i] {
					t.Fatalf("period %d (%.2f cores busy): %d threads, want %d", i, b, got, tc.want[i])
				}
			}
		})
	}
}
