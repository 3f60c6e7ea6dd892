package mesh

import (
	"sort"
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
	if i < len(t.q) && t.q[i].off == off {
		t.q[i].done = true
	}
	n := 0
	for n < len(t.q) && t.q[n].done {
		n++
	}
	if n > 0 {
		t.q = t.q[n:]
		if cap(t.q) > 1024 && len(t.q) < cap(t.q)/4 {
			t.q = append([]trackEntry(nil), t.q...)
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

// idle tells whether every record read is finished.
func (t *tracker) idle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.q) == 0
}
