package kafka

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// writer produces the records of Client.Produce (the mesh's requests and
// responses) straight to each partition's leader, on connections of its
// own, with sarama's protocol types.
//
// It replaces sarama's AsyncProducer on the hot path for the reason
// PartitionReader replaced its consumer: a record handed to the async
// producer passes through five goroutines (dispatcher, topic, partition,
// aggregator, flusher) on its way to the broker and two more (response
// receiver, the successes channel's reader) on its way back, each a
// wake-up, and on an idle sidecar each wake-up of another thread adds to a
// call's latency. Here the goroutine that produces writes the request
// itself when its broker has none in flight; otherwise its record waits
// and goes with the next request, which the goroutine reading the answer
// to the previous one writes. Either way no goroutine is woken but the
// producer's, when its record is acknowledged.
//
// What sarama's producer guarantees is kept: acks=all; one request in
// flight per broker, so the records of a partition are written in the
// order they were produced; the idempotent producer (a producer id, and a
// sequence number per partition), so that a batch sent again, because its
// acknowledgement was lost or the partition's leader moved, is written
// once; failed batches retried (Producer.Retry.Max times, Retry.Backoff
// apart) against the leader the metadata then names.
type writer struct {
	c    *Client
	conf *sarama.Config // for the writer's connections (see newWriter)

	version    int16 // of the ProduceRequest
	idempotent bool
	acks       sarama.RequiredAcks
	timeout    int32 // ms the broker waits for the replicas
	retries    int
	backoff    time.Duration

	// renew serialises the renewals of the producer id.
	renew sync.Mutex

	mu     sync.Mutex
	pid    int64
	epoch  int16
	gen    uint64 // counts the producer ids; a batch carries the one it was numbered under
	parts  map[topicPartition]*wpart
	conns  map[int32]*wconn // by broker id
	closed bool
}

type topicPartition struct {
	topic string
	p     int32
}

// wpart is what the writer holds for one partition.
type wpart struct {
	tp      topicPartition
	seq     int32      // the sequence number of the next batch, under w.gen
	pending []*wrecord // not yet in a batch, in the order produced
	// batch is the partition's batch that was sent and is not answered
	// yet (sending), or that failed and waits to be sent again as it is:
	// the broker recognises a batch sent again only by its sequence
	// numbers, so it must not grow.
	batch   *wbatch
	sending bool
	// conn is the leader's connection the partition's records go on; nil
	// while its leader is being looked up (locate).
	conn     *wconn
	locating bool // a locate is under way or scheduled
	queued   bool // in conn.ready
	failures int  // sends and lookups failed in a row
}

// wrecord is one record waiting for its acknowledgement.
type wrecord struct {
	val []byte
	// done is told the outcome: on the goroutine that reads the answer,
	// so it must not block.
	done func(error)
	// again marks a record sent once more after its partition's sequence
	// was lost: a second such failure is the producer's to hear.
	again bool
}

type wbatch struct {
	recs  []*wrecord
	seq   int32
	gen   uint64
	pid   int64
	epoch int16
	sent  bool // at least once: the broker may have it
}

// wconn is the writer's connection to one broker.
type wconn struct {
	id    int32
	addr  string
	b     *sarama.Broker // nil while not open
	dial  sync.Mutex     // one dial at a time
	busy  bool           // a request in flight
	ready []*wpart       // partitions with something to send, in order
}

// Batches and requests stay within what a broker takes by default.
const (
	maxBatchBytes   = MaxMessageBytes
	maxRequestBytes = 16 << 20
)

func newWriter(c *Client, sc *sarama.Config) *writer {
	conf := *sc
	// The connections are the writer's: it keeps one request in flight on
	// each, and writes the next from the callback of the previous, while
	// sarama's response reader still holds the previous one's slot. With
	// room for two, that write never waits for a slot the same goroutine
	// would free. (sarama's check ties MaxOpenRequests=1 to its own
	// idempotent producer, which these connections are not.)
	conf.Net.MaxOpenRequests = 2
	conf.Producer.Idempotent = false
	w := &writer{
		c:          c,
		conf:       &conf,
		idempotent: sc.Producer.Idempotent,
		acks:       sc.Producer.RequiredAcks,
		timeout:    int32(sc.Producer.Timeout / time.Millisecond),
		retries:    sc.Producer.Retry.Max,
		backoff:    sc.Producer.Retry.Backoff,
		pid:        -1,
		epoch:      -1,
		parts:      map[topicPartition]*wpart{},
		conns:      map[int32]*wconn{},
	}
	// As sarama's producer chooses it for the version spoken.
	v := sc.Version
	switch {
	case v.IsAtLeast(sarama.V3_7_0_0):
		w.version = 10
	case v.IsAtLeast(sarama.V2_8_0_0):
		w.version = 9
	case v.IsAtLeast(sarama.V2_4_0_0):
		w.version = 8
	case v.IsAtLeast(sarama.V2_1_0_0):
		w.version = 7
	case v.IsAtLeast(sarama.V2_0_0_0):
		w.version = 6
	case v.IsAtLeast(sarama.V1_0_0_0):
		w.version = 5
	default:
		w.version = 3
	}
	return w
}

// start takes a producer id when the writer is idempotent. A cluster that
// refuses one (an old broker, or an ACL without IdempotentWrite) gets a
// writer without, as sarama's producer did.
func (w *writer) start() error {
	if !w.idempotent {
		return nil
	}
	err := w.renewID()
	if err != nil && !isNetErr(err) && !errors.Is(err, sarama.ErrOutOfBrokers) {
		slog.Warn("Kafka refused an idempotent producer; a record the producer retries may be written twice", "err", err)
		w.mu.Lock()
		w.idempotent = false
		w.mu.Unlock()
		return nil
	}
	return err
}

// isIdempotent tells whether the writer numbers its batches (start turns
// it off when the cluster refuses a producer id).
func (w *writer) isIdempotent() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.idempotent
}

// renewID takes a new producer id: the sequence numbers of every partition
// start over under it.
func (w *writer) renewID() error {
	w.renew.Lock()
	defer w.renew.Unlock()
	resp, err := w.c.InitProducerID()
	if err == nil && resp.Err != sarama.ErrNoError {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("kafka producer id: %w", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pid, w.epoch = resp.ProducerID, resp.ProducerEpoch
	w.gen++
	for _, p := range w.parts {
		p.seq = 0
		if p.batch != nil && !p.sending {
			// Numbered under the old id: its records go again under the new.
			p.pending = append(p.batch.recs, p.pending...)
			p.batch = nil
		}
	}
	return nil
}

// produce queues one record for topic/partition; done is told its outcome
// (see wrecord).
func (w *writer) produce(topic string, partition int32, val []byte, done func(error)) {
	tp := topicPartition{topic, partition}
	w.mu.Lock()
	p := w.parts[tp]
	if p == nil {
		w.mu.Unlock()
		// A partition never written before: it must exist.
		ps, err := w.c.Partitions(topic)
		if err == nil && (partition < 0 || int(partition) >= len(ps)) {
			err = sarama.ErrInvalidPartition
		}
		if err != nil {
			done(err)
			return
		}
		w.mu.Lock()
		if p = w.parts[tp]; p == nil {
			p = &wpart{tp: tp}
			w.parts[tp] = p
		}
	}
	if w.closed {
		w.mu.Unlock()
		done(errClosed)
		return
	}
	p.pending = append(p.pending, &wrecord{val: val, done: done})
	if p.conn == nil {
		// Its first record, or the first since its leader was lost: find
		// the leader. A locate under way takes this record with the others.
		locate := !p.locating
		p.locating = true
		w.mu.Unlock()
		if locate {
			w.locate(p, 0)
		}
		return
	}
	c := p.conn
	w.ready(p)
	s := w.next(c)
	w.mu.Unlock()
	w.send(s)
}

var errClosed = errors.New("kafka client closed")

// ready queues p on its connection, if it has something to send. w.mu held.
func (w *writer) ready(p *wpart) {
	if p.queued || p.sending || p.conn == nil || (p.batch == nil && len(p.pending) == 0) {
		return
	}
	if p.conn.b == nil {
		// The connection failed: nothing would write what waits on it.
		// Look for the leader again (it may have moved) and connect.
		p.conn = nil
		if !p.locating && !w.closed {
			p.locating = true
			go w.locate(p, 0)
		}
		return
	}
	p.queued = true
	p.conn.ready = append(p.conn.ready, p)
}

// sending is one produce request about to be written on a connection.
type sending struct {
	c     *wconn
	b     *sarama.Broker
	req   *sarama.ProduceRequest
	parts []*wpart
}

// next takes the request to write on c when it has none in flight and
// something to send. w.mu held.
func (w *writer) next(c *wconn) *sending {
	if c.busy || c.b == nil || len(c.ready) == 0 {
		return nil
	}
	req := &sarama.ProduceRequest{Version: w.version, RequiredAcks: w.acks, Timeout: w.timeout}
	s := &sending{c: c, b: c.b, req: req}
	now := time.Now().Truncate(time.Millisecond)
	size := 0
	rest := c.ready[:0]
	for _, p := range c.ready {
		if size >= maxRequestBytes {
			rest = append(rest, p)
			continue
		}
		p.queued = false
		if p.batch == nil {
			if len(p.pending) == 0 {
				continue
			}
			p.batch = w.batch(p)
		}
		b := p.batch
		rb := &sarama.RecordBatch{
			Version:        2,
			FirstTimestamp: now,
			MaxTimestamp:   now,
			ProducerID:     b.pid,
			ProducerEpoch:  b.epoch,
			FirstSequence:  b.seq,
			Records:        make([]*sarama.Record, len(b.recs)),
		}
		recs := make([]sarama.Record, len(b.recs))
		for i, r := range b.recs {
			recs[i] = sarama.Record{Value: r.val, OffsetDelta: int64(i)}
			rb.Records[i] = &recs[i]
			size += len(r.val)
		}
		rb.LastOffsetDelta = int32(len(b.recs) - 1)
		req.AddBatch(p.tp.topic, p.tp.p, rb)
		b.sent = true
		p.sending = true
		s.parts = append(s.parts, p)
	}
	clear(c.ready[len(rest):])
	c.ready = rest
	if len(s.parts) == 0 {
		return nil
	}
	c.busy = true
	return s
}

// batch numbers the next batch of p's pending records. w.mu held.
func (w *writer) batch(p *wpart) *wbatch {
	n, size := 0, 0
	for n < len(p.pending) && (n == 0 || size+len(p.pending[n].val) <= maxBatchBytes) {
		size += len(p.pending[n].val)
		n++
	}
	b := &wbatch{recs: p.pending[:n:n], gen: w.gen, pid: -1, epoch: -1, seq: -1}
	p.pending = p.pending[n:]
	if w.idempotent {
		b.pid, b.epoch, b.seq = w.pid, w.epoch, p.seq
		p.seq = int32((int64(p.seq) + int64(n)) % (math.MaxInt32 + 1))
	}
	return b
}

// send writes s, if any; its answer arrives in answered.
func (w *writer) send(s *sending) {
	if s == nil {
		return
	}
	err := s.b.AsyncProduce(s.req, func(resp *sarama.ProduceResponse, err error) { w.answered(s, resp, err) })
	if err != nil {
		w.answered(s, nil, err)
	}
}

// answered takes the broker's answer to s (or the failure to get one),
// completes the records acknowledged and writes the connection's next
// request. It runs on the goroutine of sarama's response reader, or on the
// producer's when the write failed.
func (w *writer) answered(s *sending, resp *sarama.ProduceResponse, err error) {
	type outcome struct {
		recs []*wrecord
		err  error
	}
	var done []outcome
	var retry []*wpart
	renew := false
	w.mu.Lock()
	c := s.c
	c.busy = false
	if err != nil && c.b == s.b {
		// The connection failed: the partitions waiting for it look for
		// their leader again, and open a connection then.
		go s.b.Close()
		c.b = nil
		for _, p := range c.ready {
			p.queued, p.conn = false, nil
			retry = append(retry, p)
		}
		c.ready = nil
		// Partitions with nothing to send look for their leader when
		// they next have a record: it may be on another broker now.
		for _, p := range w.parts {
			if p.conn == c && !p.sending {
				p.conn = nil
			}
		}
	}
	for _, p := range s.parts {
		p.sending = false
		b := p.batch
		perr := err
		if perr == nil {
			if blk := resp.GetBlock(p.tp.topic, p.tp.p); blk == nil {
				perr = sarama.ErrIncompleteResponse
			} else {
				perr = blk.Err
			}
		}
		if errors.Is(perr, sarama.ErrNoError) || errors.Is(perr, sarama.ErrDuplicateSequenceNumber) {
			perr = nil
		}
		switch {
		case perr == nil:
			p.batch, p.failures = nil, 0
			done = append(done, outcome{b.recs, nil})
			w.ready(p)
		case b.gen != w.gen:
			// Numbered under a producer id since replaced: the records
			// go again under the new one.
			p.pending = append(b.recs, p.pending...)
			p.batch = nil
			w.ready(p)
		case retriable(perr) && p.failures < w.retries && !w.closed:
			p.failures++
			p.conn = nil // the leader may have moved: look for it again
			retry = append(retry, p)
		case w.idempotent && sequenceLost(perr) && !b.recs[0].again:
			// The partition is new to the broker (its topic was deleted
			// and created again, or lost with a broker that came back
			// empty) or the id was fenced: nothing was written. Under a
			// new id the records go once more.
			for _, r := range b.recs {
				r.again = true
			}
			p.pending = append(b.recs, p.pending...)
			p.batch, p.failures = nil, 0
			renew = true
		default:
			p.batch = nil
			p.failures = 0
			done = append(done, outcome{b.recs, perr})
			if w.idempotent && (retriable(perr) || sequenceLost(perr)) {
				// The broker may hold the batch, or knows another
				// sequence: the partition's numbering is lost.
				renew = true
			} else if w.idempotent {
				// Refused outright: its numbers were not used.
				p.seq = b.seq
			}
			w.ready(p)
		}
	}
	retry = slices.DeleteFunc(retry, func(p *wpart) bool {
		if p.locating {
			return true
		}
		p.locating = true
		return false
	})
	var next *sending
	if !renew {
		next = w.next(c)
	}
	closed := w.closed
	w.mu.Unlock()
	wait := w.backoff
	if err != nil && !closed {
		// A connection lost (a broker closes one idle for 10 minutes)
		// is opened again at once; a second failure waits.
		wait = 0
	}
	for _, p := range retry {
		go w.locate(p, wait)
	}
	if renew {
		// Before the failures are told: a caller that produces again at
		// once does so under the new id. The records sent once more go
		// under it as well.
		w.renewAfterLoss()
		w.mu.Lock()
		for _, p := range s.parts {
			w.ready(p)
		}
		next = w.next(c)
		w.mu.Unlock()
	}
	for _, o := range done {
		for _, r := range o.recs {
			r.done(o.err)
		}
	}
	w.send(next)
}

// locate finds p's leader and its connection, after wait, and sends what p
// holds; a failure counts against p's records as a failed send does. The
// caller set p.locating.
func (w *writer) locate(p *wpart, wait time.Duration) {
	if wait > 0 {
		time.Sleep(wait)
	}
	w.mu.Lock()
	refresh := p.failures > 0
	w.mu.Unlock()
	c, err := w.connFor(p.tp, refresh)
	w.mu.Lock()
	if w.closed {
		err = errClosed
	}
	if err != nil {
		if p.failures < w.retries && !w.closed {
			p.failures++
			w.mu.Unlock()
			go w.locate(p, w.backoff)
			return
		}
		recs := p.pending
		if p.batch != nil {
			recs = append(p.batch.recs, recs...)
			if w.idempotent && p.batch.sent {
				defer w.renewAfterLoss()
			}
			p.batch = nil
		}
		p.pending, p.failures, p.locating = nil, 0, false
		w.mu.Unlock()
		for _, r := range recs {
			r.done(err)
		}
		return
	}
	p.conn, p.locating = c, false
	w.ready(p)
	s := w.next(c)
	w.mu.Unlock()
	w.send(s)
}

// warm opens the connections to the leaders of topic's partitions ahead of
// their first record. A failure is left to that record, which dials again.
func (w *writer) warm(topic string) {
	ps, err := w.c.Partitions(topic)
	if err != nil {
		return
	}
	dialed := map[int32]bool{}
	for _, p := range ps {
		leader, err := w.c.Leader(topic, p)
		if err != nil || dialed[leader.ID()] {
			continue
		}
		dialed[leader.ID()] = true
		w.connFor(topicPartition{topic, p}, false)
	}
}

// renewAfterLoss takes a new producer id after a batch the broker may hold
// was given up: the partition's numbering is lost.
func (w *writer) renewAfterLoss() {
	if err := w.renewID(); err != nil {
		slog.Warn("cannot renew the Kafka producer id", "err", err)
	}
}

// connFor returns the open connection to tp's leader, refreshing the
// metadata first when refresh.
func (w *writer) connFor(tp topicPartition, refresh bool) (*wconn, error) {
	if refresh {
		if err := w.c.RefreshMetadata(tp.topic); err != nil {
			return nil, err
		}
	}
	leader, err := w.c.Leader(tp.topic, tp.p)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	c := w.conns[leader.ID()]
	if c == nil || c.addr != leader.Addr() {
		c = &wconn{id: leader.ID(), addr: leader.Addr()}
		w.conns[c.id] = c
	}
	open := c.b != nil
	w.mu.Unlock()
	if open {
		return c, nil
	}
	c.dial.Lock()
	defer c.dial.Unlock()
	w.mu.Lock()
	open = c.b != nil
	w.mu.Unlock()
	if open {
		return c, nil
	}
	b, err := dial(c.addr, w.conf)
	if err != nil {
		return nil, err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		b.Close()
		return nil, errClosed
	}
	c.b = b
	s := w.next(c) // partitions that queued while it opened
	w.mu.Unlock()
	w.send(s)
	return c, nil
}

// reset looks up every partition's leader again and takes a new producer
// id (the topic was created again: its partitions know no sequence).
func (w *writer) reset() error {
	var locate []*wpart
	w.mu.Lock()
	for _, c := range w.conns {
		c.ready = nil
	}
	for _, p := range w.parts {
		p.queued = false
		if p.sending {
			continue // its answer decides
		}
		p.conn = nil
		if !p.locating && (p.batch != nil || len(p.pending) > 0) {
			p.locating = true
			locate = append(locate, p)
		}
	}
	w.mu.Unlock()
	var err error
	if w.idempotent {
		err = w.renewID()
	}
	for _, p := range locate {
		go w.locate(p, 0)
	}
	return err
}

// close fails what waits and closes the connections.
func (w *writer) close() {
	w.mu.Lock()
	w.closed = true
	var recs []*wrecord
	for _, p := range w.parts {
		if p.batch != nil && !p.sending {
			recs = append(recs, p.batch.recs...)
			p.batch = nil
		}
		recs = append(recs, p.pending...)
		p.pending = nil
	}
	for _, c := range w.conns {
		c.ready = nil
		if c.b != nil {
			go c.b.Close()
		}
	}
	w.mu.Unlock()
	for _, r := range recs {
		r.done(errClosed)
	}
}

// retriable tells the failures after which a batch is sent again: the
// leader moved or is not ready, too few replicas, a timeout, or the
// connection.
func retriable(err error) bool {
	var ke sarama.KError
	if !errors.As(err, &ke) {
		return true // the connection, or the answer, failed
	}
	switch ke {
	case sarama.ErrNotLeaderForPartition, sarama.ErrLeaderNotAvailable, sarama.ErrUnknownTopicOrPartition,
		sarama.ErrRequestTimedOut, sarama.ErrNotEnoughReplicas, sarama.ErrNotEnoughReplicasAfterAppend,
		sarama.ErrKafkaStorageError, sarama.ErrNetworkException, sarama.ErrInvalidMessage:
		return true
	}
	return false
}

// sequenceLost tells the failures after which the partition's sequence
// numbers no longer match the broker's.
func sequenceLost(err error) bool {
	return producerReset(err) || errors.Is(err, sarama.ErrInvalidProducerEpoch) || errors.Is(err, sarama.ErrProducerFenced)
}
