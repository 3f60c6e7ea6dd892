package mesh

import "testing"

func TestTrackerSnapshot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		read     []int64
		finished []int64
		pos      int64
		ranges   string
	}{
		{"nothing read", nil, nil, 10, ""},
		{"all finished", []int64{10, 11, 12}, []int64{11, 10, 12}, 13, ""},
		{"first runs", []int64{10, 11, 12, 13}, []int64{11, 12, 13}, 10, "11-13"},
		{"gaps", []int64{10, 11, 12, 13, 14, 15}, []int64{10, 12, 14, 15}, 11, "12,14-15"},
		{"offsets skip (compacted log)", []int64{10, 11, 14, 15}, []int64{14, 15}, 10, "14-15"},
		{"none past the position", []int64{10, 11}, nil, 10, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := newTracker(10)
			epochs := map[int64]int{}
			for _, off := range tc.read {
				epochs[off] = tr.add(off)
			}
			for _, off := range tc.finished {
				tr.finish(epochs[off], off)
			}
			pos, ranges, _ := tr.snapshot()
			if pos != tc.pos || ranges != tc.ranges {
				t.Fatalf("snapshot = %d %q, want %d %q", pos, ranges, tc.pos, tc.ranges)
			}
			skip := parseFinished(ranges)
			for _, off := range tc.read {
				want := off > pos && contains64(tc.finished, off)
				if skip.has(off) != want {
					t.Errorf("skip.has(%d) = %v, want %v", off, !want, want)
				}
			}
		})
	}
}

func TestParseFinishedLeavesOutMalformed(t *testing.T) {
	f := parseFinished("5-3,x,7,9-y,11-12")
	for off, want := range map[int64]bool{3: false, 4: false, 5: false, 7: true, 9: false, 11: true, 12: true, 13: false} {
		if f.has(off) != want {
			t.Errorf("has(%d) = %v, want %v", off, !want, want)
		}
	}
}

func TestTrackerChangesCountFinishesOnce(t *testing.T) {
	tr := newTracker(0)
	e := tr.add(0)
	tr.add(1)
	tr.finish(e, 1)
	tr.finish(e, 1) // a duplicate finish
	if _, _, c := tr.snapshot(); c != 1 {
		t.Fatalf("changes = %d, want 1", c)
	}
}

func contains64(xs []int64, x int64) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}
