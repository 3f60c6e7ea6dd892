package mesh

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"

	"github.com/redis/go-redis/v9"
)

// claimScript claims the first free partition lease from a random start.
// ARGV: lease prefix, partition count, start, id, ttl ms.
var claimScript = redis.NewScript(`
local n = tonumber(ARGV[2])
local start = tonumber(ARGV[3])
for i = 0, n - 1 do
  local p = (start + i) % n
  if redis.call('SET', ARGV[1] .. p, ARGV[4], 'NX', 'PX', ARGV[5]) then return p end
end
return -1`)

func (m *Mesh) claim(ctx context.Context, n int32) (int32, error) {
	for attempt := 0; attempt < 10; attempt++ {
		p, err := claimScript.Run(ctx, m.rdb, nil, m.keys.LeasePrefix(), n, mrand.IntN(int(n)), m.id, m.opts.LeaseTTL.Milliseconds()).Int()
		if err != nil {
			return 0, fmt.Errorf("claim a partition: %w", err)
		}
		if p >= 0 {
			return int32(p), nil
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
	rec, _ := json.Marshal(m.self)
	primary := m.self.Partition
	parts := make([]int32, 0, len(m.owned))
	for p := range m.owned {
		parts = append(parts, p)
	}
	m.mu.Unlock()
	pipe := m.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(parts))
	for i, p := range parts {
		r := ""
		if p == primary {
			r = string(rec)
		}
		cmds[i] = renewScript.Eval(ctx, pipe, []string{m.keys.Lease(p), m.keys.Sidecar(m.id)}, m.id, m.opts.LeaseTTL.Milliseconds(), r)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Not a verdict on the leases: try again at the next tick.
		if ctx.Err() == nil {
			m.log.Warn("cannot renew leases", "err", err)
		}
		return
	}
	for i, c := range cmds {
		if n, _ := c.Int(); n == 0 {
			m.lost(ctx, parts[i], parts[i] == primary)
		}
	}
}

func (m *Mesh) lost(ctx context.Context, p int32, primary bool) {
	m.log.Error("lost the lease of a partition (was this sidecar stalled?)", "partition", p)
	m.mu.Lock()
	o := m.owned[p]
	delete(m.owned, p)
	m.mu.Unlock()
	if o != nil {
		o.r.Close()
	}
	if !primary {
		return
	}
	n, err := m.kc.EnsureTopic(ctx, m.topic, m.opts.Partitions)
	if err == nil {
		var np int32
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
		m.log.Error("cannot claim a new partition", "err", err)
	}
}

// renewScript extends a lease and the member record while the caller still
// owns the lease. KEYS: lease, member. ARGV: id, ttl ms, member JSON ("" to skip).
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  if ARGV[3] ~= '' then redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2]) end
  return 1
end
return 0`)
