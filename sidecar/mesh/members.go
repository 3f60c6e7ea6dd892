package mesh

import (
	"context"
	"encoding/json"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/redis/go-redis/v9"
)

// Member is one sidecar's registration, kept in Redis under its lease.
type Member struct {
	ID        string    `json:"id"`
	Partition int32     `json:"partition"`
	Services  []string  `json:"services,omitempty"`
	Actors    []string  `json:"actors,omitempty"`
	Host      string    `json:"host,omitempty"`
	Port      int       `json:"port,omitempty"`
	Version   string    `json:"version,omitempty"`
	Started   time.Time `json:"started"`
	// Client marks a one-shot sidecar (kar rest, kar invoke).
	Client bool `json:"client,omitempty"`
	// raw is the record as read from Redis: a dead member's record is
	// deleted only if it has not changed since (bury).
	raw string
}

// view is an immutable snapshot of the live members, swapped atomically so
// the hot path reads it without locks.
type view struct {
	byID      map[string]*Member
	byService map[string][]*Member
	byActor   map[string][]*Member
}

func newView(members []*Member) *view {
	v := &view{byID: map[string]*Member{}, byService: map[string][]*Member{}, byActor: map[string][]*Member{}}
	// Deterministic order keeps round-robin fair across refreshes.
	slices.SortFunc(members, func(a, b *Member) int {
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	for _, m := range members {
		v.byID[m.ID] = m
		for _, s := range m.Services {
			v.byService[s] = append(v.byService[s], m)
		}
		for _, t := range m.Actors {
			v.byActor[t] = append(v.byActor[t], m)
		}
	}
	return v
}

// pick chooses a member from ms round-robin.
func pick(ms []*Member, rr *atomic.Uint64) *Member {
	if len(ms) == 0 {
		return nil
	}
	return ms[rr.Add(1)%uint64(len(ms))]
}

// forgetScript drops a sidecar from the set of members unless it
// registered again since its record was found missing.
// KEYS: members set, member record. ARGV: id.
var forgetScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[2]) == 0 then return redis.call('SREM', KEYS[1], ARGV[1]) end
return 0`)

// LoadMembers reads the registered members of the application whose keys
// are given; ids whose record expired are dropped from the set (their
// sidecar died).
func LoadMembers(ctx context.Context, rdb redis.UniversalClient, keys store.Keys) ([]*Member, error) {
	ids, err := rdb.SMembers(ctx, keys.Sidecars()).Result()
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, nil
	}
	recs := make([]string, len(ids))
	for i, id := range ids {
		recs[i] = keys.Sidecar(id)
	}
	vals, err := rdb.MGet(ctx, recs...).Result()
	if err != nil {
		return nil, err
	}
	var out []*Member
	var gone []any
	for i, v := range vals {
		s, ok := v.(string)
		if !ok {
			gone = append(gone, ids[i])
			continue
		}
		mem := &Member{raw: s}
		if json.Unmarshal([]byte(s), mem) != nil {
			continue
		}
		out = append(out, mem)
	}
	if len(gone) > 0 {
		pipe := rdb.Pipeline()
		for _, id := range gone {
			forgetScript.Eval(ctx, pipe, []string{keys.Sidecars(), keys.Sidecar(id.(string))}, id)
		}
		pipe.Exec(ctx)
	}
	return out, nil
}

// refresh reloads the view and retries held requests that may now have a target.
func (m *Mesh) refresh(ctx context.Context) error {
	ms, err := LoadMembers(ctx, m.rdb, m.keys)
	if err != nil {
		return err
	}
	m.view.Store(newView(m.withoutBuried(ms)))
	m.retryHeld(ctx)
	m.retryStrays()
	return nil
}

// Members returns the live members as last seen.
func (m *Mesh) Members() []*Member {
	v := m.view.Load()
	out := make([]*Member, 0, len(v.byID))
	for _, mem := range v.byID {
		out = append(out, mem)
	}
	slices.SortFunc(out, func(a, b *Member) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

// Logger is the mesh's logger.
func (m *Mesh) Logger() *slog.Logger { return m.log }

// watchLoop refreshes the view when a sidecar joins, changes or leaves,
// and each time the subscription is made again (after a lost connection:
// notices sent meanwhile were lost).
func (m *Mesh) watchLoop(ctx context.Context) {
	ch := m.sub.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(store.PubSubCheck))
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-ch:
			if !ok {
				return
			}
			msg, notice := v.(*redis.Message)
			if notice && strings.HasPrefix(msg.Payload, "leave ") {
				select {
				case m.adoptC <- struct{}{}:
				default:
				}
			}
			select {
			case m.refreshC <- struct{}{}:
			default:
			}
		}
	}
}

// membershipPoll is how often the view is reloaded without a notice, to
// drop sidecars that died without a word. Not more often: each reload
// reads every member's record, so a mesh of N members polling every
// second cost N² record reads a second at idle. A dead member is dropped
// sooner when its partition, holding work, is adopted (bury announces it);
// until then requests routed to it wait in its partition for the adopter.
const membershipPoll = 10 * time.Second

// refreshLoop reloads the view on notice (watchLoop), and every
// membershipPoll.
func (m *Mesh) refreshLoop(ctx context.Context) {
	every(ctx, membershipPoll+time.Duration(mrand.IntN(1000))*time.Millisecond, m.refreshC, func(ctx context.Context) {
		if err := m.refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("cannot read membership", "err", err)
		}
		m.sweep(time.Now())
	})
}
