package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/wait"
)

// Run delivers the events of every subscription of the application until
// ctx ends, then stops its deliveries, hands its subscriptions back (so
// another sidecar takes them at once) and returns nil. Redis and Kafka
// errors are logged and retried; they do not end Run.
//
// Any number of sidecars run Run against the same Redis. Each
// subscription is delivered by exactly one of them at a time: the one
// holding its lease (a Redis key with a TTL, renewed every LeaseTTL/3).
// The holder reads the subscription's topic with a kafka.PartitionReader
// per partition from the committed offsets (in Redis), delivers one event at a
// time (the next only after the actor method returned for the previous
// one), retrying a failed delivery with backoff, and commits the offset
// after each success — only while it still holds the lease. A holder that
// dies stops renewing; its lease expires and another sidecar goes on from
// the last committed offset: delivery is at least once (the event in
// flight when a holder dies is delivered again). A holder that cannot
// renew pauses before its lease could have expired.
func (s *Service) Run(ctx context.Context) error {
	if s.opts.Deliver == nil || s.opts.SidecarID == "" {
		return errors.New("events: Run needs Options.Deliver and Options.SidecarID")
	}
	ps := s.rdb.Subscribe(ctx, wakeChannel(s.keys))
	defer ps.Close()
	notices := ps.Channel()

	r := &runner{s: s, workers: map[string]*worker{}, ended: make(chan *worker, 16), stopping: make(chan struct{}), base: time.Now()}
	defer r.stopAll()
	ticker := time.NewTicker(s.opts.Poll)
	defer ticker.Stop()
	for {
		r.reconcile(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		case <-notices:
			wait.Drain(notices)
		case <-s.wake:
		case w := <-r.ended:
			if r.workers[w.field] == w {
				delete(r.workers, w.field)
			}
		}
	}
}

// runner is the state of one Run.
type runner struct {
	s       *Service
	workers map[string]*worker // by subscription field
	ended   chan *worker
	// stopping is closed when Run returns: ended is no longer read.
	stopping chan struct{}
	base     time.Time // monotonic origin of lease deadlines
	// closing counts the partition readers of ended sessions that are
	// still closing, so that Run returns only once all have ended.
	closing sync.WaitGroup
	// freeSince is when (runner.now) each subscription beyond our share
	// was first seen without a lease: one left free for a grace period
	// (its runner is gone or slow) we take after all.
	freeSince map[string]time.Duration
}

// now is the monotonic time since the runner started.
func (r *runner) now() time.Duration { return time.Since(r.base) }

// active counts the workers that are not handing their subscription over.
func (r *runner) active() int {
	n := 0
	for _, w := range r.workers {
		if !w.handingOff() {
			n++
		}
	}
	return n
}

// reconcile stops the workers of subscriptions that were removed or
// changed, starts workers for subscriptions whose lease it can take, and
// hands a subscription over when it holds more than its share.
func (r *runner) reconcile(ctx context.Context) {
	s := r.s
	all, err := s.rdb.HGetAll(ctx, s.keys.Subscriptions()).Result()
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("events: cannot read the subscriptions from Redis; retrying", "err", err)
		}
		return
	}
	for f, w := range r.workers {
		if all[f] != w.raw {
			w.cancel() // removed from the map when it has ended
		}
	}
	// Spread the subscriptions over the live runners: each takes at most
	// a fair share, more only of those left free for a grace period (the
	// other runners may be gone or slow), and gives back what it holds
	// beyond its share once nothing is left free, so a runner that joins
	// or comes late gets its part.
	share, live := len(all), 1
	if n, err := heartbeatScript.Run(ctx, s.rdb, []string{runnersKey(s.keys)}, s.opts.SidecarID,
		max(3*s.opts.Poll, s.opts.LeaseTTL).Milliseconds()).Int(); err == nil && n > 1 {
		live = n
		share = (len(all) + live - 1) / live
	}
	var idle []string // subscriptions we do not deliver
	for f := range all {
		if _, running := r.workers[f]; !running {
			idle = append(idle, f)
		}
	}
	holders := make([]any, len(idle))
	if len(idle) > 0 {
		keys := make([]string, len(idle))
		for i, f := range idle {
			keys[i] = leaseKey(s.keys, f)
		}
		if holders, err = s.rdb.MGet(ctx, keys...).Result(); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("events: cannot read the subscription leases from Redis; retrying", "err", err)
			}
			return
		}
	}
	now, grace := r.now(), 2*s.opts.Poll
	freeSince := map[string]time.Duration{}
	free := 0
	for i, f := range idle {
		if h, _ := holders[i].(string); h != "" && h != s.opts.SidecarID {
			continue // another runner delivers it
		}
		if r.active() >= share {
			since, seen := r.freeSince[f]
			if !seen {
				since = now
			}
			if now-since < grace {
				freeSince[f] = since
				free++
				continue
			}
		}
		ok, err := acquireScript.Run(ctx, s.rdb, []string{leaseKey(s.keys, f), s.keys.Subscriptions()},
			s.opts.SidecarID, s.opts.LeaseTTL.Milliseconds(), f, all[f]).Int()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("events: cannot take a subscription lease", "subscription", f, "err", err)
			}
			return
		}
		if ok == 1 {
			r.start(ctx, f, all[f])
		}
	}
	r.freeSince = freeSince
	if live > 1 && free == 0 && r.active() > share {
		for _, w := range r.workers {
			if !w.handingOff() {
				s.log.Debug("events: handing a subscription over to a runner below its share", "subscription", w.field)
				w.handOff()
				break
			}
		}
	}
}

// heartbeatScript records that runner ARGV[1] is alive (by Redis's clock),
// forgets runners silent for ARGV[2] ms and returns how many are alive.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])`)

func (r *runner) start(ctx context.Context, f, raw string) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{r: r, field: f, raw: raw, cancel: cancel, done: make(chan struct{}), yield: make(chan struct{})}
	w.validUntil.Store(int64(r.now() + r.s.opts.LeaseTTL*4/5))
	if err := json.Unmarshal([]byte(raw), &w.sub); err != nil {
		r.s.log.Error("events: a subscription is stored corrupt; not delivering it", "subscription", f, "err", err)
		cancel()
		close(w.done)
		go r.release(w)
		return
	}
	r.workers[f] = w
	go w.run(wctx)
}

// stopAll stops every worker and waits for them and their readers.
func (r *runner) stopAll() {
	close(r.stopping)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	r.s.rdb.ZRem(ctx, runnersKey(r.s.keys), r.s.opts.SidecarID)
	cancel()
	for _, w := range r.workers {
		w.cancel()
	}
	for _, w := range r.workers {
		<-w.done
	}
	// Every session has ended: no reader is added any more.
	r.closing.Wait()
}

// release gives a lease back if this sidecar still holds it.
func (r *runner) release(w *worker) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := releaseScript.Run(ctx, r.s.rdb, []string{leaseKey(r.s.keys, w.field)}, r.s.opts.SidecarID).Err(); err != nil {
		r.s.log.Debug("events: cannot release a subscription lease; it will expire", "subscription", w.field, "err", err)
	}
}

// acquireScript takes the lease KEYS[1] for ARGV[1] (TTL ARGV[2] ms) if it
// is free or already ours, and only if the subscription (field ARGV[3] of
// KEYS[2]) still reads ARGV[4].
var acquireScript = redis.NewScript(`
if redis.call('HGET', KEYS[2], ARGV[3]) ~= ARGV[4] then return 0 end
local v = redis.call('GET', KEYS[1])
if v and v ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1`)

// renewScript extends our lease while the subscription is unchanged.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('HGET', KEYS[2], ARGV[3]) ~= ARGV[4] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1`)

// releaseScript deletes our lease.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// commitScript records the next offset of a partition while we hold the
// lease, then checks that the subscription (field ARGV[5] of KEYS[3]) still
// reads ARGV[6] and renews the lease (TTL ARGV[4] ms): 1 when both hold.
var commitScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
if redis.call('HGET', KEYS[3], ARGV[5]) ~= ARGV[6] then return 2 end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1`)

// worker delivers one subscription while its runner holds the lease.
type worker struct {
	r      *runner
	field  string
	raw    string
	sub    Subscription
	cancel context.CancelFunc
	done   chan struct{}
	// validUntil is when (runner.now) the lease may have expired for all
	// we know: deliveries pause past it.
	validUntil atomic.Int64
	// yield is closed to stop delivering after the event in hand and give
	// the lease back (see handOff).
	yield     chan struct{}
	yieldOnce sync.Once
}

// handOff asks the worker to finish the event in hand, commit it and give
// its lease back, so that another runner goes on without a redelivery.
func (w *worker) handOff() { w.yieldOnce.Do(func() { close(w.yield) }) }

func (w *worker) handingOff() bool {
	select {
	case <-w.yield:
		return true
	default:
		return false
	}
}

// errLeaseLost ends a worker whose lease another sidecar took.
var errLeaseLost = errors.New("subscription lease lost")

// errHandedOff ends a worker that gives its subscription to another runner.
var errHandedOff = errors.New("subscription handed over")

func (w *worker) run(ctx context.Context) {
	s := w.r.s
	defer func() {
		w.cancel()
		w.r.release(w)
		close(w.done)
		select {
		case w.r.ended <- w:
		case <-w.r.stopping:
		}
	}()
	s.log.Debug("events: delivering a subscription", "subscription", w.field, "topic", w.sub.Topic)
	go w.renew(ctx)
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		err := w.session(ctx)
		if ctx.Err() != nil || errors.Is(err, errLeaseLost) || errors.Is(err, errHandedOff) {
			return
		}
		backoff = min(max(2*backoff, s.opts.RetryMin), s.opts.RetryMax)
		if err != nil {
			s.log.Warn("events: subscription paused; retrying", "subscription", w.field, "topic", w.sub.Topic, "err", err, "retry_in", backoff)
		}
		if !wait.Sleep(ctx, backoff) {
			return
		}
	}
}

// renew keeps the lease until ctx ends, cancelling the worker when the
// lease is lost or the subscription changed.
func (w *worker) renew(ctx context.Context) {
	s := w.r.s
	t := time.NewTicker(s.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ok, err := w.check(ctx)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				s.log.Warn("events: cannot renew a subscription lease", "subscription", w.field, "err", err)
			}
		case !ok:
			w.cancel()
			return
		}
	}
}

// check renews the lease, reporting false when it is lost or the
// subscription changed or was cancelled (the worker must stop).
func (w *worker) check(ctx context.Context) (bool, error) {
	s := w.r.s
	asked := w.r.now()
	ok, err := renewScript.Run(ctx, s.rdb, []string{leaseKey(s.keys, w.field), s.keys.Subscriptions()},
		s.opts.SidecarID, s.opts.LeaseTTL.Milliseconds(), w.field, w.raw).Int()
	if err != nil {
		return false, err
	}
	if ok != 1 {
		s.log.Info("events: subscription lease lost or subscription changed; stopping its delivery", "subscription", w.field)
		return false, nil
	}
	w.validUntil.Store(int64(asked + s.opts.LeaseTTL*4/5))
	return true, nil
}

// leaseValid waits until the lease is known to be ours (false: ctx ended).
func (w *worker) leaseValid(ctx context.Context) bool {
	for time.Duration(w.validUntil.Load()) < w.r.now() {
		if !wait.Sleep(ctx, 20*time.Millisecond) {
			return false
		}
	}
	return ctx.Err() == nil
}

// errTopicMissing pauses a subscription whose topic does not exist (it
// was deleted): it resumes when the topic is created again.
var errTopicMissing = errors.New("topic does not exist")

// errPartitionsChanged restarts a session to read new partitions.
var errPartitionsChanged = errors.New("partitions changed")

// session reads the topic from the committed offsets and delivers until
// ctx ends or something needs a fresh start.
func (w *worker) session(ctx context.Context) error {
	s := w.r.s
	kt := s.kafkaTopic(w.sub.Topic)
	if err := s.kc.RefreshMetadata(kt); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		return fmt.Errorf("kafka metadata of %s: %w", kt, err)
	}
	parts, err := s.kc.Partitions(kt)
	if err != nil || len(parts) == 0 {
		return fmt.Errorf("%w: %s", errTopicMissing, w.sub.Topic)
	}
	stored, err := s.rdb.HGetAll(ctx, offsetsKey(s.keys, w.field)).Result()
	if err != nil {
		return fmt.Errorf("read committed offsets: %w", err)
	}

	// Each partition is read by a reader on a connection of its own (a
	// broker answers a connection's requests in order, so readers sharing
	// one would wait out each other's parked fetches). Its handler passes
	// one record at a time to the loop below and blocks until the loop
	// takes it, so a slow subscriber holds at most one fetch per partition
	// in memory. The handler gives up when the session ends: Close waits
	// for a record being handed over, and must not wait for ever.
	sctx, stop := context.WithCancel(ctx)
	msgs := make(chan *sarama.ConsumerMessage)
	failed := make(chan error, 1)
	rds := make([]*kafka.PartitionReader, 0, len(parts))
	defer func() {
		stop()
		for _, rd := range rds {
			rd.Close() // no record is handed over after it returns
		}
		w.r.closed(rds)
	}()
	for _, p := range parts {
		off := int64(sarama.OffsetOldest) // resolved by the reader (OutOfRange)
		if v, ok := stored[strconv.Itoa(int(p))]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				off = n
			}
		}
		rds = append(rds, s.kc.ReadPartitionWith(kt, p, off, kafka.ReadOptions{
			Record: func(m *sarama.ConsumerMessage) {
				select {
				case msgs <- m:
				case <-sctx.Done():
				}
			},
			OutOfRange: func(from, oldest int64) {
				if from >= 0 {
					s.log.Warn("events: committed offset no longer in the topic (deleted and created again, or past retention); reading from the oldest",
						"subscription", w.field, "topic", w.sub.Topic, "partition", p, "offset", from, "oldest", oldest)
				}
			},
			// Any failure (the topic deleted, the broker gone) ends the
			// session, which starts again from the committed offsets
			// after a backoff, with fresh metadata.
			Error: func(err error) {
				select {
				case failed <- fmt.Errorf("reading partition %d: %w", p, err):
				default:
				}
			},
		}))
	}

	check := time.NewTicker(5 * s.opts.Poll)
	defer check.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.yield:
			return errHandedOff
		case err := <-failed:
			return err
		case <-check.C:
			// Partitions added by any sidecar: read them too.
			if err := s.kc.RefreshMetadata(kt); err != nil {
				continue
			}
			if ps, err := s.kc.Partitions(kt); err == nil && len(ps) != len(parts) {
				return errPartitionsChanged
			}
		case m := <-msgs:
			// Records already in hand when a commit confirmed the
			// subscription were published before any cancellation of it,
			// so they need no check of their own: under load one Redis
			// round trip per event (commit + check) instead of two.
			checked := false
			for m != nil {
				if err := w.deliver(ctx, m, checked); err != nil {
					return err
				}
				var next *sarama.ConsumerMessage
				select {
				case next = <-msgs:
				default:
				}
				ok, err := w.commit(ctx, m.Partition, m.Offset+1)
				if err != nil {
					return err
				}
				if !ok {
					w.cancel()
					return errLeaseLost
				}
				if w.handingOff() {
					return errHandedOff // next is read again by the new holder
				}
				m, checked = next, true
			}
		}
	}
}

// commit records that the partition's events before next were delivered.
// It retries while Redis is unreachable (ok=false: the lease is gone).
func (w *worker) commit(ctx context.Context, partition int32, next int64) (bool, error) {
	s := w.r.s
	backoff := 20 * time.Millisecond
	for {
		asked := w.r.now()
		ok, err := commitScript.Run(ctx, s.rdb, []string{leaseKey(s.keys, w.field), offsetsKey(s.keys, w.field), s.keys.Subscriptions()},
			s.opts.SidecarID, strconv.Itoa(int(partition)), next, s.opts.LeaseTTL.Milliseconds(), w.field, w.raw).Int()
		if err == nil {
			if ok == 1 {
				w.validUntil.Store(int64(asked + s.opts.LeaseTTL*4/5))
			} else {
				s.log.Info("events: subscription lease lost or subscription changed; stopping its delivery", "subscription", w.field)
			}
			return ok == 1, nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		s.log.Warn("events: cannot commit a delivered event's offset; retrying", "subscription", w.field, "err", err)
		if !wait.Sleep(ctx, backoff) {
			return false, ctx.Err()
		}
		backoff = min(2*backoff, s.opts.RetryMax)
	}
}

// deliver delivers one record, retrying with exponential backoff until it
// succeeds or is dead-lettered, while the lease is ours.
// checked says that the subscription was confirmed after m was read, so
// the first attempt needs no check.
func (w *worker) deliver(ctx context.Context, m *sarama.ConsumerMessage, checked bool) error {
	s := w.r.s
	p, err := fromRecord(s.opts.App, m)
	if err != nil {
		s.log.Error("events: skipping a record that is not a readable CloudEvent", "subscription", w.field,
			"topic", w.sub.Topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		return nil
	}
	backoff := time.Duration(0)
	for attempt := 1; ; attempt++ {
		if !w.leaseValid(ctx) {
			return ctx.Err()
		}
		// A subscription cancelled (or changed) before this event was
		// read gets nothing more: check with Redis before each delivery.
		ok, err := true, error(nil)
		if !checked || attempt > 1 {
			ok, err = w.check(ctx)
		}
		if err == nil && !ok {
			w.cancel()
			return errLeaseLost
		}
		if err == nil && w.sub.Sink != "" {
			err = s.deliverSink(ctx, w.sub, p, attempt)
		} else if err == nil {
			err = w.deliverActor(ctx, p)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var rejected rejectedErr
		if w.sub.Sink == "" && (attempt >= s.opts.MaxAttempts || errors.As(err, &rejected)) {
			return w.deadLetter(ctx, m, attempt, err)
		}
		if w.handingOff() {
			return errHandedOff // the new holder retries it
		}
		backoff = min(max(2*backoff, s.opts.RetryMin), s.opts.RetryMax)
		s.log.Warn("events: delivery failed; will retry", "subscription", w.field, "topic", w.sub.Topic,
			"event", p.ev.ID(), "attempt", attempt, "err", oneLine(err.Error()), "retry_in", backoff)
		if !wait.Sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
}

func (w *worker) deliverActor(ctx context.Context, p published) error {
	arg, err := deliveryArg(p, w.sub.ContentType)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", p.ev.ID(), err)
	}
	return w.r.s.opts.Deliver(ctx, w.sub.Actor.Type, w.sub.Actor.ID, w.sub.Path, "application/json", actorArgs(arg))
}

// closed records the readers of an ended session: Run waits for them to
// end (their goroutine and connection), but a new session, a hand-off or
// the next worker need not wait out their parked fetches.
func (r *runner) closed(rds []*kafka.PartitionReader) {
	r.closing.Add(1)
	go func() {
		defer r.closing.Done()
		for _, rd := range rds {
			<-rd.Done()
		}
	}()
}
