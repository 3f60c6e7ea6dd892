package mesh

import (
	"sort"
	"strconv"
	"strings"
	"sync"
)

// tracker knows which records of one partition are finished, so that the
// committed position never passes a record still being worked on.
type tracker struct {
	mu   sync.Mutex
	q    []trackEntry // records read and not yet committed past, in offset order
	next int64        // the offset after the last record read
	// epoch counts resets: records read before a reset are finished
	// against the epoch they were read in, and ignored.
	epoch int
	// changes counts the records finished: a commit is due when it moved.
	changes uint64
}

type trackEntry struct {
	off  int64
	done bool
}

func newTracker(start int64) *tracker { return &tracker{next: start} }

// add records that the record at off was read, and returns the epoch to
// finish it in.
func (t *tracker) add(off int64) int {
	t.mu.Lock()
	t.q = append(t.q, trackEntry{off: off})
	t.next = off + 1
	e := t.epoch
	t.mu.Unlock()
	return e
}

// reset starts over at start: the partition's log was lost at the broker
// (it came back empty) and its offsets begin again.
func (t *tracker) reset(start int64) {
	t.mu.Lock()
	t.q = nil
	t.next = start
	t.epoch++
	t.mu.Unlock()
}

// finish marks the record at off, read in epoch, finished.
func (t *tracker) finish(epoch int, off int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if epoch != t.epoch {
		return
	}
	i := sort.Search(len(t.q), func(i int) bool { return t.q[i].off >= off })
	if i < len(t.q) && t.q[i].off == off && !t.q[i].done {
		t.q[i].done = true
		t.changes++
	}
	n := 0
	for n < len(t.q) && t.q[n].done {
		n++
	}
	if n > 0 {
		switch q := t.q[n:]; {
		case cap(q) > 1024 && len(q) < cap(q)/4:
			t.q = append([]trackEntry(nil), q...) // a backlog's array goes
		case len(q) <= 64:
			// The few records left move to the front: add reuses the
			// array, where slicing past the finished ones made it
			// allocate a new one each time it reached the end.
			t.q = t.q[:copy(t.q, q)]
		default:
			t.q = q
		}
	}
}

// position is the offset from which a new owner must read: the first
// unfinished record, or the next record when all are finished.
func (t *tracker) position() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.q) > 0 {
		return t.q[0].off
	}
	return t.next
}

// maxFinishedRanges bounds the finished records a commit lists past the
// position: past it, the rest run again after a crash (at least once).
const maxFinishedRanges = 512

// snapshot returns, at one instant, the position, the records finished
// past it (as ranges, formatFinished) and the count of finishes.
func (t *tracker) snapshot() (pos int64, finished string, changes uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.q) == 0 {
		return t.next, "", t.changes
	}
	var b strings.Builder
	ranges := 0
	for i := 1; i < len(t.q) && ranges < maxFinishedRanges; i++ {
		if !t.q[i].done {
			continue
		}
		j := i
		for j+1 < len(t.q) && t.q[j+1].done && t.q[j+1].off == t.q[j].off+1 {
			j++
		}
		if ranges > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatInt(t.q[i].off, 10))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.FormatInt(t.q[j].off, 10))
		}
		ranges++
		i = j
	}
	return t.q[0].off, b.String(), t.changes
}

// finishedSet is the records a previous owner of a partition finished
// past its committed position (snapshot's format: "a-b,c,..."), which a
// new owner skips instead of running them again.
type finishedSet [][2]int64

// parseFinished reads snapshot's format; a malformed range is left out
// (its records run again: at least once).
func parseFinished(s string) finishedSet {
	var out finishedSet
	for r := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(r, "-")
		a, err := strconv.ParseInt(lo, 10, 64)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.ParseInt(hi, 10, 64); err != nil || b < a {
				continue
			}
		}
		out = append(out, [2]int64{a, b})
	}
	return out
}

// has tells whether off is in the set.
func (f finishedSet) has(off int64) bool {
	i := sort.Search(len(f), func(i int) bool { return f[i][1] >= off })
	return i < len(f) && f[i][0] <= off
}

// idle tells whether every record read is finished.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.q) == 0
}
