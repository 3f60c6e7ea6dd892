package events

import (
	"sync"

	"github.com/IBM/sarama"

	"github.com/kar-runtime/kar/adapter/kafka"
)

// A feed reads one partition of an event topic once for every delivering
// session of this sidecar that reads it. Each subscription group keeps its
// own position (its committed offset), but while groups are caught up they
// want the same records: one reader, one broker connection and one parked
// fetch serve them all, where a reader per group would cost a connection
// and a fetch per long poll each (10^4 subscriptions of a topic would be
// 10^4 connections).
//
// A session joins a feed with a tap: its position and its channel. The
// feed's reader never waits for a session: it offers each record to every
// tap at or before it, and a tap whose channel is full (its subscriber is
// slow or retrying) or that joined behind the feed reads on its own (a
// reader of its own from its position) until it has caught up with the
// feed, then joins it again. So a slow subscription never holds back the
// others, and a caught-up one costs nothing of its own.
type feeds struct {
	kc *kafka.Client
	// closed is told of every reader this sidecar stops, so that Run
	// returns only once their goroutines and connections have ended.
	closed func(*kafka.PartitionReader)
	// outOfRange is told when a tap's position is no longer in its
	// partition (see kafka.ReadOptions.OutOfRange).
	outOfRange func(t *tap, from, oldest int64)
	// failed is told of a reader's failed fetch or connection (the reader
	// retries by itself).
	failed func(topic string, p int32, err error)

	mu     sync.Mutex
	byPart map[feedKey]*feed
}

type feedKey struct {
	topic string
	p     int32
}

type feed struct {
	fs  *feeds
	key feedKey

	// mu guards everything below and the position and reader of every tap.
	mu sync.Mutex
	rd *kafka.PartitionReader // nil until a tap at a known offset joins
	// pos is the offset past the last record rd offered: rd offers every
	// record at or past it, so a tap at or past pos needs no reader of
	// its own.
	pos  int64
	taps map[*tap]struct{}
}

// tap is one session's place in a feed.
type tap struct {
	f     *feed
	group string
	out   chan<- *sarama.ConsumerMessage
	done  <-chan struct{} // closed when the session ends: a blocked hand-over gives up
	next  int64           // offset of the next record the session wants
	own   *ownReader      // non-nil while the tap reads on its own
}

// ownReader is a tap's reader of its own (its identity tells a stale
// reader's records apart, as it closes in the background).
type ownReader struct{ rd *kafka.PartitionReader }

func newFeeds(kc *kafka.Client) *feeds {
	return &feeds{kc: kc, byPart: map[feedKey]*feed{},
		closed: func(*kafka.PartitionReader) {}, outOfRange: func(*tap, int64, int64) {}, failed: func(string, int32, error) {}}
}

// join starts handing the records of partition p of topic from offset next
// (sarama.OffsetOldest: the oldest there is) to out, until leave.
func (fs *feeds) join(topic string, p int32, next int64, group string, out chan<- *sarama.ConsumerMessage, done <-chan struct{}) *tap {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	k := feedKey{topic, p}
	f := fs.byPart[k]
	if f == nil {
		f = &feed{fs: fs, key: k, taps: map[*tap]struct{}{}}
		fs.byPart[k] = f
	}
	t := &tap{f: f, group: group, out: out, done: done, next: next}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.taps[t] = struct{}{}
	switch {
	case next < 0:
		// A position to be resolved (no committed offset yet): the tap
		// finds out where it is with a reader of its own.
		f.readOwn(t)
	case f.rd == nil:
		f.start(next)
	case next < f.pos:
		f.readOwn(t) // behind the feed
	}
	return t
}

// leave stops handing records to t. Its session must have ended (done
// closed): a reader of its own may be blocked handing it a record.
func (fs *feeds) leave(t *tap) {
	f := t.f
	fs.mu.Lock()
	f.mu.Lock()
	delete(f.taps, t)
	own := t.own
	t.own = nil
	var rd *kafka.PartitionReader
	if len(f.taps) == 0 {
		delete(fs.byPart, f.key)
		rd, f.rd = f.rd, nil
	}
	f.mu.Unlock()
	fs.mu.Unlock()
	// Outside the locks: Close waits for a record being handed over, and
	// the handler takes f.mu.
	for _, r := range []*kafka.PartitionReader{rd, ownRd(own)} {
		if r != nil {
			r.Close()
			fs.closed(r)
		}
	}
}

func ownRd(o *ownReader) *kafka.PartitionReader {
	if o == nil {
		return nil
	}
	return o.rd
}

// topics lists the topics being read, for a metadata refresh.
func (fs *feeds) topics() []string {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	seen := map[string]bool{}
	var out []string
	for k := range fs.byPart {
		if !seen[k.topic] {
			seen[k.topic] = true
			out = append(out, k.topic)
		}
	}
	return out
}

// start starts the shared reader at offset (f.mu held).
func (f *feed) start(offset int64) {
	f.pos = offset
	f.rd = f.fs.kc.ReadPartitionWith(f.key.topic, f.key.p, offset, kafka.ReadOptions{
		Record:     f.offer,
		OutOfRange: f.reset,
		Error:      func(err error) { f.fs.failed(f.key.topic, f.key.p, err) },
	})
}

// offer gives a record of the shared reader to every tap that wants it
// now, without waiting: a tap with a full channel goes on with a reader of
// its own from that record.
func (f *feed) offer(m *sarama.ConsumerMessage) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t := range f.taps {
		if t.own != nil || m.Offset < t.next {
			continue
		}
		select {
		case t.out <- m:
			t.next = m.Offset + 1
		default:
			f.readOwn(t)
		}
	}
	f.pos = m.Offset + 1
}

// reset follows the shared reader to the oldest offset when its position
// is no longer in the partition (the topic was deleted and created again,
// or trimmed): the taps reading with it go there too, as a reader of their
// own would.
func (f *feed) reset(from, oldest int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for t := range f.taps {
		if t.own == nil {
			f.fs.outOfRange(t, t.next, oldest)
			t.next = oldest
		}
	}
	f.pos = oldest
}

// readOwn gives t a reader of its own from t.next (f.mu held).
func (f *feed) readOwn(t *tap) {
	o := &ownReader{}
	t.own = o
	o.rd = f.fs.kc.ReadPartitionWith(f.key.topic, f.key.p, t.next, kafka.ReadOptions{
		Record: func(m *sarama.ConsumerMessage) { f.handOwn(t, o, m) },
		OutOfRange: func(from, oldest int64) {
			f.mu.Lock()
			defer f.mu.Unlock()
			if t.own == o {
				f.fs.outOfRange(t, from, oldest)
				t.next = oldest
			}
		},
		Error: func(err error) { f.fs.failed(f.key.topic, f.key.p, err) },
	})
}

// handOwn hands a record of t's own reader o to t, waiting for its
// session to take it; once t has caught up with the feed it joins the
// feed again and o closes.
func (f *feed) handOwn(t *tap, o *ownReader, m *sarama.ConsumerMessage) {
	f.mu.Lock()
	if t.own != o || m.Offset < t.next {
		f.mu.Unlock()
		return
	}
	f.mu.Unlock()
	// Only o moves t.next while t.own is o, so it can wait unlocked.
	select {
	case t.out <- m:
	case <-t.done:
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if t.own != o {
		return // left meanwhile
	}
	t.next = m.Offset + 1
	if f.rd == nil {
		f.start(t.next)
	}
	if t.next >= f.pos {
		t.own = nil
		// Told now, while Run is sure to wait for it; closed once this
		// very hand-over has returned (Close waits for it).
		f.fs.closed(o.rd)
		go o.rd.Close()
	}
}
