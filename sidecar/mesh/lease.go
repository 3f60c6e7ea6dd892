package mesh

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand/v2"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/redis/go-redis/v9"
)

// claim takes the first free partition lease from a random start. The
// leases live in the slots of their partitions (on a Redis Cluster, on
// different shards), so no one script may try them all: claim reads them
// in one round trip and takes a free one with SET NX, which only one
// claimant wins.
func (m *Mesh) claim(ctx context.Context, n int32) (int32, error) {
	for attempt := 0; attempt < 10; attempt++ {
		keys := make([]string, n)
		for p := range n {
			keys[p] = m.keys.Lease(p)
		}
		owners, err := store.GetMany(ctx, m.rdb, keys)
		if err != nil {
			return 0, fmt.Errorf("claim a partition: %w", err)
		}
		start := int32(mrand.IntN(int(n)))
		for i := range n {
			p := (start + i) % n
			if owners[p] != nil {
				continue
			}
			ok, err := m.rdb.SetNX(ctx, keys[p], m.id, m.opts.LeaseTTL).Result()
			if err != nil {
				return 0, fmt.Errorf("claim a partition: %w", err)
			}
			if ok {
				return p, nil
			}
		}
		if n, err = m.kc.GrowTopic(ctx, m.topic, n+16); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("no free partition after growing the topic 10 times")
}

// renewLoop keeps this sidecar's leases; a lease lost (this sidecar was
// presumed dead) gives up that partition and, if it was the primary one,
// claims another.
func (m *Mesh) renewLoop(ctx context.Context) {
	every(ctx, m.opts.LeaseTTL/4, nil, m.renew)
}

func (m *Mesh) renew(ctx context.Context) {
	m.mu.Lock()
	_, hasPrimary := m.owned[m.self.Partition]
	leaving := m.leaving
	m.mu.Unlock()
	if !hasPrimary && !leaving {
		m.claimPrimary(ctx)
	}
	m.mu.Lock()
	primary := m.self.Partition
	parts := make([]int32, 0, len(m.owned))
	for p := range m.owned {
		parts = append(parts, p)
	}
	m.mu.Unlock()
	pipe := m.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(parts))
	for i, p := range parts {
		cmds[i] = renewScript.Eval(ctx, pipe, []string{m.keys.Lease(p)}, m.id, m.opts.LeaseTTL.Milliseconds())
	}
	_, err := pipe.Exec(ctx)
	if err == nil {
		// The member record lives with the set of members, in another
		// slot than the leases: it is renewed once the primary lease is
		// known to be still this sidecar's.
		for i, c := range cmds {
			if n, _ := c.Int(); parts[i] == primary && n != renewLost {
				err = m.renewRecord(ctx)
			}
		}
	}
	if err != nil {
		// Not a verdict on the leases: try again at the next tick.
		if ctx.Err() == nil {
			m.opts.Metrics.LeaseRenewals(-1)
			m.health.redisFailed(err)
			m.log.Warn("cannot renew leases", "err", err)
		}
		return
	}
	retaken, lostPrimary := false, false
	for i, c := range cmds {
		switch n, _ := c.Int(); n {
		case renewRetaken:
			// The lease had expired (Redis restarted or lost its data,
			// or this sidecar could not reach it for a while) and nobody
			// took the partition meanwhile: keep reading it, so that
			// responses on their way here still arrive and nothing is
			// read twice.
			m.log.Warn("the lease of a partition had expired; took it again", "partition", parts[i])
			retaken = true
		case renewLost:
			m.lost(parts[i])
			lostPrimary = lostPrimary || parts[i] == primary
		}
	}
	// Only now, with every lost partition's reader closed: a read held by
	// the fence (partition.go) goes on when the renewal is known to work.
	m.health.redisOK()
	m.opts.Metrics.LeaseRenewals(len(parts))
	if lostPrimary {
		m.health.set(problemNoPartition, "lost the lease of its partition and has not claimed another yet")
		m.claimPrimary(ctx)
	}
	if retaken {
		// The registration may have expired with the lease.
		if err := m.register(ctx, "update"); err != nil {
			m.log.Warn("cannot register again", "err", err)
		}
	}
}

// lost gives up partition p, which another sidecar took while this one
// could not renew its lease (stalled, or cut off from Redis). For the
// primary partition renew then claims another, and until it has one the
// sidecar reports itself unhealthy.
func (m *Mesh) lost(p int32) {
	m.log.Error("lost the lease of a partition to another sidecar (was this sidecar stalled or cut off from Redis?)", "partition", p)
	m.opts.Metrics.LeaseLost()
	m.mu.Lock()
	o := m.owned[p]
	delete(m.owned, p)
	m.mu.Unlock()
	m.unbury(p)
	if o != nil {
		o.close()
	}
}

// claimPrimary claims a new primary partition after the old one was lost.
func (m *Mesh) claimPrimary(ctx context.Context) {
	var np int32
	n, err := m.kc.EnsureTopic(ctx, m.topic, m.opts.Partitions)
	if err == nil {
		if np, err = m.claim(ctx, n); err == nil {
			if err = m.startPartition(ctx, np, false); err == nil {
				m.mu.Lock()
				m.self.Partition = np
				m.mu.Unlock()
				err = m.register(ctx, "update")
			}
		}
	}
	if err != nil {
		// renew tries again at its next tick.
		m.log.Error("cannot claim a new partition", "err", err)
		return
	}
	m.health.clear(problemNoPartition)
	m.log.Warn("claimed a new partition", "partition", np)
}

// Results of renewScript.
const (
	renewLost    = 0 // another sidecar holds the lease
	renewKept    = 1
	renewRetaken = 2 // the lease had expired and was free: taken again
)

// renewScript extends a lease while the caller still owns it, or takes the
// lease again if it expired and is free.
// KEYS: lease. ARGV: id, ttl ms.
var renewScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
elseif not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0`)

// renewRecord extends the member record and puts the sidecar back in the
// set of members: a reader of the set drops ids whose record expired (a
// Redis outage expires them all), and one that read the set just before
// this sidecar registered again would otherwise leave it out for good.
func (m *Mesh) renewRecord(ctx context.Context) error {
	return m.writeRecord(ctx, "")
}
