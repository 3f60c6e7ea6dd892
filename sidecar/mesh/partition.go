package mesh

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/redis/go-redis/v9"
)

// owned is a partition this sidecar reads: its own (primary) one or an
// adopted one.
type owned struct {
	p         int32
	r         *kafka.PartitionReader
	tr        *tracker
	adopted   bool
	committed int64
	// committedChanges is the tracker's count of finishes at the last commit.
	committedChanges uint64
	// skip: records past the start that the previous owner finished.
	skip finishedSet
	// below: records under this offset may have been worked on by a
	// previous owner (redeliveries): chain steps among them are replayed.
	below    int64
	lastWork atomic.Int64 // Unix ms of the last record read
	// closing is closed when the partition is given up, before its
	// reader is closed: a read held by the fence ends.
	closing   chan struct{}
	closeOnce sync.Once
}

// close gives up reading o.
func (o *owned) close() {
	o.closeOnce.Do(func() { close(o.closing) })
	o.r.Close()
}

// startPartition reads partition p from its committed position.
func (m *Mesh) startPartition(ctx context.Context, p int32, adopted bool) error {
	start := sarama.OffsetOldest
	vals, err := store.GetMany(ctx, m.rdb, []string{m.keys.Offset(p), m.keys.Finished(p)})
	if err != nil {
		return fmt.Errorf("read position of partition %d: %w", p, err)
	}
	var skip finishedSet
	if s, ok := vals[0].(string); ok {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			start = v
			if f, ok := vals[1].(string); ok {
				skip = parseFinished(f)
			}
		}
	}
	if start == sarama.OffsetOldest {
		oldest, err := m.kc.GetOffset(m.topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("read partition %d: %w", p, err)
		}
		start = oldest
	}
	o := &owned{p: p, tr: newTracker(start), adopted: adopted, committed: start, skip: skip, closing: make(chan struct{})}
	if hwm, err := m.kc.GetOffset(m.topic, p, sarama.OffsetNewest); err == nil && hwm > start {
		o.below = hwm
	}
	o.lastWork.Store(time.Now().UnixMilli())
	m.mu.Lock()
	m.owned[p] = o
	m.mu.Unlock()
	o.r = m.kc.ReadPartitionWith(m.topic, p, start, kafka.ReadOptions{
		Handle: func(off int64, value []byte) {
			if !m.fence(o) {
				return
			}
			epoch := o.tr.add(off)
			o.lastWork.Store(time.Now().UnixMilli())
			if o.skip.has(off) {
				// Finished by the previous owner after its position.
				o.tr.finish(epoch, off)
				return
			}
			m.dispatch(o, epoch, off, value)
		},
		OutOfRange: func(offset, oldest int64) { m.outOfRange(o, offset, oldest) },
		Error: func(err error) {
			// The reader connects again after any error.
			m.opts.Metrics.Reconnect("kafka")
			m.kafkaFailed(err)
		},
		Fetched: m.health.kafkaOK,
	})
	return nil
}

// fence holds the reading of partition o while this sidecar's lease
// renewals have not worked for a lease's lifetime (Redis unreachable, or
// this sidecar stalled): another sidecar may be adopting the partition
// meanwhile, and records read now would run on both. It returns true once
// a renewal works again, false when the partition is given up or the
// sidecar leaves (the record stays unfinished, for the partition's next
// reader).
func (m *Mesh) fence(o *owned) bool {
	if !m.health.leaseLapsed() {
		return true
	}
	m.log.Warn("holding the partition's records until a lease renewal works again", "partition", o.p)
	t := time.NewTicker(max(m.opts.LeaseTTL/8, 10*time.Millisecond))
	defer t.Stop()
	for m.health.leaseLapsed() {
		select {
		case <-o.closing:
			return false
		case <-m.stopping:
			return false
		case <-t.C:
		}
	}
	return true
}

// serveRequest serves a request for this sidecar's component.
func (m *Mesh) serveRequest(env *Envelope, finish func()) {
	if env.ActorType != "" {
		m.serveActor(env, finish)
	} else {
		m.serve(env, finish)
	}
}

// finished marks the record at off of o, read in epoch, finished.
func (m *Mesh) finished(o *owned, epoch int, off int64) {
	o.tr.finish(epoch, off)
	select {
	case m.commitC <- struct{}{}:
	default:
	}
}

func (m *Mesh) dispatch(o *owned, epoch int, off int64, value []byte) {
	if o.adopted {
		m.opts.Metrics.RecordRead(true, false)
	}
	env, err := Decode(value)
	if err != nil {
		m.log.Warn("dropping a record that is not a kar message", "partition", o.p, "offset", off, "err", err)
		m.finished(o, epoch, off)
		return
	}
	if env.App != m.opts.App {
		// Only this application's sidecars write kar records here;
		// anything else was put there by someone else and is not run.
		m.log.Warn("dropping a record of another application", "partition", o.p, "offset", off, "app", env.App)
		m.finished(o, epoch, off)
		return
	}
	if env.Kind == KindResponse && env.To == m.id {
		// The usual response, finished here: no closure for it.
		m.complete(env)
		m.finished(o, epoch, off)
		return
	}
	// The record's finish, for whoever finishes it later.
	finish := func() { m.finished(o, epoch, off) }
	if env.Kind == KindResponse {
		m.onResponse(env, o.p, finish)
		return
	}
	if m.serves(env) {
		if off < o.below {
			m.opts.Metrics.RecordRead(false, true)
		}
		m.beginServe()
		m.workers.Go(task{m: m, env: env, finish: finish, once: isStep(env.ID) || off < o.below || env.MayRepeat})
		return
	}
	m.route(env, finish)
}

// commitLoop commits positions soon after records are finished, at most
// every commitSpacing: a sidecar killed -9 leaves the records finished
// since its last commit to be delivered again by the partition's next
// owner, so the sooner the better, but one Redis call per record would
// cost more than the call itself. Every finish signals commitC (a signal
// is never lost: the channel holds one); the slow tick retries a commit
// that failed, without waking an idle sidecar 20 times a second.
func (m *Mesh) commitLoop(ctx context.Context) {
	every(ctx, time.Second, m.commitC, func(ctx context.Context) {
		m.commit(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(commitSpacing):
		}
	})
}

const commitSpacing = 5 * time.Millisecond

func (m *Mesh) commit(ctx context.Context) {
	m.mu.Lock()
	os := make([]*owned, 0, len(m.owned))
	for _, o := range m.owned {
		os = append(os, o)
	}
	m.mu.Unlock()
	for _, o := range os {
		pos, finished, changes := o.tr.snapshot()
		if pos == o.committed && changes == o.committedChanges {
			continue
		}
		if err := commitScript.Run(ctx, m.rdb, m.commitKeys(o.p), m.id, pos, finished).Err(); err != nil {
			if ctx.Err() == nil {
				m.log.Warn("cannot commit position", "partition", o.p, "err", err)
			}
			continue
		}
		o.committed, o.committedChanges = pos, changes
	}
}

// commitKeys are the keys of commitScript and releaseScript.
func (m *Mesh) commitKeys(p int32) []string {
	return []string{m.keys.Lease(p), m.keys.Offset(p), m.keys.Finished(p)}
}

// commitScript stores a partition's position, and the records finished
// past it, if the caller owns the lease: a record finished while an
// earlier one still runs (a long actor method) is not run again by the
// partition's next owner. KEYS: lease, offset, finished. ARGV: id,
// position, finished ranges.
var commitScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  if ARGV[3] == '' then redis.call('DEL', KEYS[3]) else redis.call('SET', KEYS[3], ARGV[3]) end
  return 1
end
return 0`)
