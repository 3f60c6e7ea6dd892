package kafka

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
)

// PartitionReader reads one partition with long-poll fetches on a
// connection of its own, handing each record to a function in offset order.
//
// It replaces sarama's PartitionConsumer on the mesh's hot path for two
// reasons. First, sarama batches new partition subscriptions for a fixed,
// unexported 100 ms before the first fetch, and that delay landed on every
// new sidecar's first requests and on every one-shot `kar rest`. Second,
// its several goroutines and channels per record cost CPU on every call.
// Close returns at once; the connection closes when a parked fetch returns
// (within fetchWait), and Done says when that happened.
// The event runner (sidecar/events) reads event topics with it as well,
// for the same reasons (ReadPartitionWith).
type PartitionReader struct {
	c      *Client
	topic  string
	p      int32
	handle func(offset int64, value []byte)
	opts   ReadOptions

	next atomic.Int64 // offset of the next record to fetch
	hwm  atomic.Int64
	// topicID is the broker's id of the topic as first read: a topic
	// deleted and created again under its name has another. Only the
	// reader's goroutine uses it.
	topicID sarama.Uuid

	mu     sync.Mutex
	broker *sarama.Broker
	// handling is held while a record is handed over, so that Close can
	// promise that none is handed over after it returns.
	handling sync.Mutex
	stopped  atomic.Bool
	stop     chan struct{}
	done     chan struct{}
}

// fetchWait is how long a fetch parks at the broker waiting for a record.
const fetchWait = 500 * time.Millisecond

// ReadPartition starts reading partition p of topic at offset.
func (c *Client) ReadPartition(topic string, p int32, offset int64, handle func(offset int64, value []byte)) *PartitionReader {
	return c.ReadPartitionWith(topic, p, offset, ReadOptions{Handle: handle})
}

// ReadOptions say what a PartitionReader hands over and reports. The mesh
// needs only each record's value; the event runner (sidecar/events) needs
// whole records (CloudEvents in binary mode keep their attributes in
// headers) and to hear about failures and skipped offsets.
type ReadOptions struct {
	// Handle receives each record's offset and value.
	Handle func(offset int64, value []byte)
	// Record, when set instead of Handle, receives each record whole: key,
	// headers and timestamp as well (what sarama's consumer hands out).
	Record func(*sarama.ConsumerMessage)
	// OutOfRange, when set, is told that offset is no longer in the
	// partition (the topic was deleted and created again, or trimmed) and
	// that reading goes on from oldest. A topic found created again when
	// the reader reconnects (its id changed) is reported so as well. An
	// offset below 0 (such as sarama.OffsetOldest) is resolved this way too.
	OutOfRange func(offset, oldest int64)
	// Error, when set, is told of each failed connection or fetch before
	// the reader retries (after a backoff of 50 ms up to 2 s). It must not
	// block: it runs on the reader's goroutine.
	Error func(error)
	// Fetched, when set, is told of each fetch the broker answered: the
	// partition is there and reachable. It must be cheap and not block.
	Fetched func()
}

// ReadPartitionWith starts reading partition p of topic at offset, handing
// records over as o says. Handle and Record run on the reader's goroutine,
// one record at a time, and may block (the reader then fetches nothing
// more); Close waits for one in progress, so one that blocks must also
// give up when its owner stops.
func (c *Client) ReadPartitionWith(topic string, p int32, offset int64, o ReadOptions) *PartitionReader {
	r := &PartitionReader{c: c, topic: topic, p: p, handle: o.Handle, opts: o, stop: make(chan struct{}), done: make(chan struct{})}
	r.next.Store(offset)
	go r.run()
	return r
}

// HighWaterMark is the partition's end offset as last fetched.
func (r *PartitionReader) HighWaterMark() int64 { return r.hwm.Load() }

// Close stops reading; it returns once no record will be handed over any
// more. The connection closes in the background: sarama holds a broker's
// lock for a whole request, so closing it waits out a parked fetch.
func (r *PartitionReader) Close() {
	r.mu.Lock()
	if !r.stopped.Swap(true) {
		close(r.stop)
	}
	b := r.broker
	r.mu.Unlock()
	r.handling.Lock()
	r.handling.Unlock()
	if b != nil {
		go b.Close()
	}
}

// Done is closed once the reader, after Close, has ended its goroutine and
// closed its connection: about fetchWait after Close when a fetch was
// parked at the broker.
func (r *PartitionReader) Done() <-chan struct{} { return r.done }

func (r *PartitionReader) isStopped() bool { return r.stopped.Load() }

func (r *PartitionReader) run() {
	defer close(r.done)
	for attempt := 0; !r.isStopped(); attempt++ {
		b, err := r.connect()
		if err == nil {
			if err = r.checkIncarnation(b); err == nil {
				attempt = 0
				err = r.fetchLoop(b)
			}
			b.Close()
		}
		if r.isStopped() {
			return
		}
		if err != nil {
			if r.opts.Error != nil {
				r.opts.Error(err)
			}
			r.c.RefreshMetadata(r.topic)
		}
		select {
		case <-time.After(min(50*time.Millisecond<<min(attempt, 5), 2*time.Second)):
		case <-r.stop:
		}
	}
}

// connect opens a connection of its own to the partition's leader.
func (r *PartitionReader) connect() (*sarama.Broker, error) {
	leader, err := r.c.Leader(r.topic, r.p)
	if err != nil {
		return nil, err
	}
	b, err := dial(leader.Addr(), r.c.Config())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped.Load() {
		b.Close()
		return nil, errors.New("stopped")
	}
	r.broker = b
	return b, nil
}

// checkIncarnation makes sure that the topic is the one this reader read
// before it (re)connected. A topic lost and created again (a broker that
// came back empty) starts its offsets over: fetching at the old position
// would fail as out of range only while the new log is shorter, and once
// it has grown past it would silently skip the new log's beginning. So a
// new topic id sends the reader to the new log's start, as OutOfRange says.
// dial opens a connection of its own to the broker at addr.
func dial(addr string, conf *sarama.Config) (*sarama.Broker, error) {
	b := sarama.NewBroker(addr)
	if err := b.Open(conf); err != nil {
		return nil, err
	}
	if ok, err := b.Connected(); !ok {
		b.Close()
		if err == nil {
			err = errors.New("not connected")
		}
		return nil, err
	}
	return b, nil
}

func (r *PartitionReader) checkIncarnation(b *sarama.Broker) error {
	resp, err := b.GetMetadata(sarama.NewMetadataRequest(r.c.Config().Version, []string{r.topic}))
	if err != nil {
		return err
	}
	var none sarama.Uuid
	for _, t := range resp.Topics {
		if t.Name != r.topic {
			continue
		}
		if t.Err != sarama.ErrNoError {
			return t.Err
		}
		switch {
		case t.Uuid == none: // a broker or protocol version without topic ids
		case r.topicID == none:
			r.topicID = t.Uuid
		case t.Uuid != r.topicID:
			r.topicID = t.Uuid
			oldest, err := r.c.GetOffset(r.topic, r.p, sarama.OffsetOldest)
			if err != nil {
				return err
			}
			if r.opts.OutOfRange != nil {
				r.opts.OutOfRange(r.next.Load(), oldest)
			}
			r.next.Store(oldest)
		}
	}
	return nil
}

// fetchLoop fetches until the connection fails or the reader stops.
func (r *PartitionReader) fetchLoop(b *sarama.Broker) error {
	for !r.isStopped() {
		req := &sarama.FetchRequest{Version: 4, MaxWaitTime: int32(fetchWait / time.Millisecond), MinBytes: 1, MaxBytes: 16 << 20, Isolation: sarama.ReadUncommitted}
		req.AddBlock(r.topic, r.p, r.next.Load(), 4<<20, -1)
		resp, err := b.Fetch(req)
		if err != nil {
			return err
		}
		block := resp.GetBlock(r.topic, r.p)
		if block == nil {
			continue
		}
		if block.Err == sarama.ErrNoError && r.opts.Fetched != nil {
			r.opts.Fetched()
		}
		switch block.Err {
		case sarama.ErrNoError:
		case sarama.ErrOffsetOutOfRange:
			// The topic was recreated or trimmed: read what is there.
			oldest, err := r.c.GetOffset(r.topic, r.p, sarama.OffsetOldest)
			if err != nil {
				return err
			}
			if r.opts.OutOfRange != nil {
				r.opts.OutOfRange(r.next.Load(), oldest)
			}
			r.next.Store(oldest)
			continue
		default:
			// Leadership moved or the partition is not ready: look again.
			return block.Err
		}
		r.hwm.Store(block.HighWaterMarkOffset)
		before := r.next.Load()
		r.deliver(block)
		if r.next.Load() != before {
			// The goroutines the records went to run before the next
			// fetch is written: on a sidecar running one thread
			// (sidecar/threads.go) the write would otherwise come first,
			// and every call would wait for it.
			runtime.Gosched()
		}
	}
	return nil
}

func (r *PartitionReader) deliver(block *sarama.FetchResponseBlock) {
	next := r.next.Load()
	for _, recs := range block.RecordsSet {
		if batch := recs.RecordBatch; batch != nil {
			if !batch.Control {
				for _, rec := range batch.Records {
					off := batch.FirstOffset + rec.OffsetDelta
					if off < next {
						continue
					}
					var m *sarama.ConsumerMessage
					if r.opts.Record != nil {
						// As sarama's consumer builds it.
						ts := batch.FirstTimestamp.Add(rec.TimestampDelta)
						if batch.LogAppendTime {
							ts = batch.MaxTimestamp
						}
						m = &sarama.ConsumerMessage{Topic: r.topic, Partition: r.p, Key: rec.Key, Value: rec.Value, Offset: off, Timestamp: ts, Headers: rec.Headers}
					}
					if r.hand(off, rec.Value, m) {
						next = off + 1
					}
				}
			}
			if last := batch.LastOffset() + 1; last > next && !batch.PartialTrailingRecord {
				next = last
			}
		} else if set := recs.MsgSet; set != nil {
			for _, mb := range set.Messages {
				if mb.Offset < next || mb.Msg == nil {
					continue
				}
				var m *sarama.ConsumerMessage
				if r.opts.Record != nil {
					m = &sarama.ConsumerMessage{Topic: r.topic, Partition: r.p, Key: mb.Msg.Key, Value: mb.Msg.Value, Offset: mb.Offset, Timestamp: mb.Msg.Timestamp}
				}
				if r.hand(mb.Offset, mb.Msg.Value, m) {
					next = mb.Offset + 1
				}
			}
		}
	}
	r.next.Store(next)
}

// hand gives one record to the handler (m to Record when set) unless the
// reader stopped.
func (r *PartitionReader) hand(off int64, value []byte, m *sarama.ConsumerMessage) bool {
	r.handling.Lock()
	defer r.handling.Unlock()
	if r.isStopped() {
		return false
	}
	if m != nil {
		r.opts.Record(m)
	} else if r.handle != nil {
		r.handle(off, value)
	}
	return true
}
