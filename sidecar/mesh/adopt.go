package mesh

import (
	"context"
	mrand "math/rand/v2"
	"strconv"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/redis/go-redis/v9"
)

// adoptLoop looks for partitions nobody owns that still hold unfinished
// records (their sidecar died or left with work undone), adopts them, and
// releases adopted partitions once they are drained.
//
// One sidecar of the application scans each second, whichever takes the
// scan's turn (OrphanScan, a key that expires): every sidecar scanning
// every second cost each of them a read of every partition's lease and
// position (and a Kafka request for the free ones), N² at idle. The
// members ask for the turn about orphanScanTries times a second between
// them, not each once a second. A notice that a sidecar left makes every
// sidecar scan at once.
func (m *Mesh) adoptLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		turn := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			members := max(len(m.view.Load().byID), 1)
			period := max(orphanScanPeriod, orphanScanPeriod*time.Duration(members)/orphanScanTries)
			t.Reset(period/2 + time.Duration(mrand.Int64N(int64(period))))
		case <-m.adoptC:
			turn = true
		}
		if !turn {
			ok, err := m.rdb.SetNX(ctx, m.keys.OrphanScan(), m.id, orphanScanPeriod).Result()
			turn = err == nil && ok
		}
		if turn {
			if err := m.adoptScan(ctx); err != nil && ctx.Err() == nil {
				m.log.Warn("scan for orphaned partitions", "err", err)
			}
		}
		m.releaseDrained(ctx)
	}
}

// orphanScanPeriod is how often the application scans for orphaned
// partitions, and orphanScanTries how many times a second its members
// ask for the turn between them.
const (
	orphanScanPeriod = time.Second
	orphanScanTries  = 4
)

func (m *Mesh) adoptScan(ctx context.Context) error {
	if m.health.recentRedisOutage(m.opts.LeaseTTL) {
		// Every lease may have expired in the outage: their live owners
		// take them again at their next renewal (renewRetaken), which
		// adopting first would turn into moves and duplicates.
		return nil
	}
	ps, err := m.kc.Partitions(m.topic)
	if err != nil {
		return err
	}
	n := int32(len(ps))
	// Each partition's lease and offset live in the partition's own slot.
	keys := make([]string, 2*n)
	for p := int32(0); p < n; p++ {
		keys[p] = m.keys.Lease(p)
		keys[n+p] = m.keys.Offset(p)
	}
	vals, err := store.GetMany(ctx, m.rdb, keys)
	if err != nil {
		return err
	}
	leases, offs := vals[:n], vals[n:]
	if m.health.recentRedisOutage(m.opts.LeaseTTL) {
		// The reads waited out an outage that began after the check
		// above: the leases they found free may be expired ones.
		return nil
	}
	// The free partitions, and where their readers stopped.
	var free, unknown []int32
	pos := map[int32]int64{}
	for p := int32(0); p < n; p++ {
		if leases[p] != nil {
			continue
		}
		m.mu.Lock()
		_, mine := m.owned[p]
		leaving := m.leaving
		m.mu.Unlock()
		if mine || leaving {
			continue
		}
		free = append(free, p)
		if s, ok := offs[p].(string); ok {
			pos[p], _ = strconv.ParseInt(s, 10, 64)
		} else {
			unknown = append(unknown, p)
		}
	}
	if len(free) == 0 {
		return nil
	}
	// One request for the ends of all of them (and one for the starts of
	// those never read), whatever their number: every sidecar runs this
	// scan every second, and a request per partition made it most of an
	// idle mesh's Kafka traffic.
	hwms, err := kafka.Offsets(m.kc, m.topic, free, sarama.OffsetNewest)
	if err != nil {
		return err
	}
	if len(unknown) > 0 {
		oldest, err := kafka.Offsets(m.kc, m.topic, unknown, sarama.OffsetOldest)
		if err != nil {
			return err
		}
		for p, o := range oldest {
			pos[p] = o
		}
	}
	for _, p := range free {
		hwm, ok := hwms[p]
		if !ok || hwm <= pos[p] {
			continue
		}
		ok, err := m.rdb.SetNX(ctx, m.keys.Lease(p), m.id, m.opts.LeaseTTL).Result()
		if err != nil || !ok {
			continue
		}
		// Before reading the partition: its records name its dead owner.
		m.bury(ctx, p)
		if err := m.startPartition(ctx, p, true); err != nil {
			m.rdb.Del(ctx, m.keys.Lease(p))
			m.unbury(p)
			m.log.Warn("cannot adopt partition", "partition", p, "err", err)
			continue
		}
		m.opts.Metrics.PartitionAdopted()
		m.log.Info("adopted an orphaned partition", "partition", p, "from", pos[p], "to", hwm)
	}
	return nil
}

// bury forgets the members whose partition p this sidecar has just
// adopted: their lease expired, so they are dead (or, stalled, will find
// the lease lost, claim another partition and register again), whatever
// their registration says. A registration can outlive its lease for a
// while (it is written after the lease is renewed, and again on every
// change), and until it expires the records of p that name that member
// would be passed back to p, which this sidecar reads: round and round.
// The view drops them at once (and at every refresh while p is adopted
// here: withoutBuried); their records go from Redis, so that the other
// sidecars and the placements stop naming them too.
func (m *Mesh) bury(ctx context.Context, p int32) {
	var dead []*Member
	for _, mem := range m.view.Load().byID {
		if mem.Partition == p && mem.ID != m.id {
			dead = append(dead, mem)
		}
	}
	if len(dead) == 0 {
		return
	}
	m.mu.Lock()
	for _, mem := range dead {
		m.buried[mem.ID] = p
	}
	m.mu.Unlock()
	m.view.Store(newView(m.withoutBuried(m.Members())))
	for _, mem := range dead {
		n, err := buryScript.Run(ctx, m.rdb, []string{m.keys.Sidecars(), m.keys.Sidecar(mem.ID)}, mem.ID, mem.raw).Int()
		if err != nil {
			m.log.Warn("cannot forget a dead member", "id", mem.ID, "err", err)
			continue
		}
		if n == 1 {
			m.rdb.Publish(ctx, m.keys.Members(), "leave "+mem.ID)
			m.log.Info("forgot a dead member whose partition was adopted", "id", mem.ID, "partition", p)
		}
	}
}

// buryScript deletes a member's record, unless it changed since it was
// read (the member registered again), and drops it from the set.
// KEYS: members set, member record. ARGV: id, record as read.
var buryScript = redis.NewScript(`
if redis.call('GET', KEYS[2]) == ARGV[2] then
  redis.call('DEL', KEYS[2])
  redis.call('SREM', KEYS[1], ARGV[1])
  return 1
end
return 0`)

// withoutBuried drops from ms the members found dead by bury, unless they
// registered again since (on another partition).
func (m *Mesh) withoutBuried(ms []*Member) []*Member {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.buried) == 0 {
		return ms
	}
	out := ms[:0:0]
	for _, mem := range ms {
		if p, ok := m.buried[mem.ID]; ok && p == mem.Partition {
			continue
		}
		out = append(out, mem)
	}
	return out
}

// unbury forgets the burials of partition p's members, once p is given
// back: their records are gone by then, or they registered again.
func (m *Mesh) unbury(p int32) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, q := range m.buried {
		if q == p {
			delete(m.buried, id)
		}
	}
}

// releaseDrained gives back adopted partitions with nothing left to do.
func (m *Mesh) releaseDrained(ctx context.Context) {
	now := time.Now().UnixMilli()
	m.mu.Lock()
	var drained []*owned
	for p, o := range m.owned {
		if o.adopted && o.tr.idle() && now-o.lastWork.Load() > 2000 && o.tr.position() >= o.r.HighWaterMark() {
			drained = append(drained, o)
			delete(m.owned, p)
		}
	}
	m.mu.Unlock()
	for _, o := range drained {
		m.release(ctx, o)
		m.unbury(o.p)
		m.log.Info("released a drained partition", "partition", o.p)
	}
}

// release stops reading o and hands its lease back with its position.
func (m *Mesh) release(ctx context.Context, o *owned) {
	o.close()
	pos, finished, _ := o.tr.snapshot()
	if err := releaseScript.Run(ctx, m.rdb, m.commitKeys(o.p), m.id, pos, finished).Err(); err != nil {
		m.log.Warn("cannot release partition", "partition", o.p, "err", err)
	}
}

// releaseScript commits a partition's position (as commitScript) and drops
// its lease, if the caller still owns it. KEYS: lease, offset, finished.
// ARGV: id, position, finished ranges.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[2], ARGV[2])
  if ARGV[3] == '' then redis.call('DEL', KEYS[3]) else redis.call('SET', KEYS[3], ARGV[3]) end
  redis.call('DEL', KEYS[1])
  return 1
end
return 0`)
