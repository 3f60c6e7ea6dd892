package mesh

import (
	"context"
	"encoding/json"
	"fmt"
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
		if mem := decodeMember(s); mem != nil {
			out = append(out, mem)
		}
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

// loadMember reads the record of member id, nil when it has none (it left
// or died) or Redis cannot say.
func (m *Mesh) loadMember(ctx context.Context, id string) *Member {
	s, err := m.rdb.Get(ctx, m.keys.Sidecar(id)).Result()
	if err != nil {
		return nil
	}
	if mem := decodeMember(s); mem != nil && mem.ID == id {
		return mem
	}
	return nil
}

// decodeMember reads a member record as stored (register), nil when it is
// not one.
func decodeMember(rec string) *Member {
	mem := &Member{raw: rec}
	if json.Unmarshal([]byte(rec), mem) != nil {
		return nil
	}
	return mem
}

// refresh reloads the view and retries held requests that may now have a
// target. Only Join (before the loops start) and refreshLoop call it.
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

// notice is a membership change as announced on the members channel:
// "join ID RECORD" and "update ID RECORD" carry the member's record, so
// that the others apply it without reading every record again (a join in
// a mesh of N members would otherwise cost N² record reads); "leave ID".
type notice struct {
	id    string
	leave bool
	mem   *Member // joined or updated
}

// parseNotice reads a notice; ok is false for one that does not carry
// what it changed (a sidecar of an earlier version announces "join ID"):
// the view is then read again whole.
func parseNotice(payload string) (n notice, ok bool) {
	what, rest, _ := strings.Cut(payload, " ")
	id, rec, _ := strings.Cut(rest, " ")
	if id == "" {
		return n, false
	}
	switch what {
	case "leave":
		return notice{id: id, leave: true}, true
	case "join", "update":
		mem := decodeMember(rec)
		if mem == nil || mem.ID != id {
			return n, false
		}
		return notice{id: id, mem: mem}, true
	}
	return n, false
}

// apply changes the view by one notice, and retries held requests that
// may now have a target.
func (m *Mesh) apply(ctx context.Context, n notice) {
	cur := m.view.Load()
	ms := make([]*Member, 0, len(cur.byID)+1)
	for id, mem := range cur.byID {
		if id != n.id {
			ms = append(ms, mem)
		}
	}
	if !n.leave {
		ms = append(ms, n.mem)
	}
	m.view.Store(newView(m.withoutBuried(ms)))
	m.retryHeld(ctx)
	m.retryStrays()
}

// watchMembers subscribes to the membership channel before Join claims a
// partition, so that no notice sent after the claim is missed.
func (m *Mesh) watchMembers(ctx context.Context) error {
	ch, stop, err := store.Watch(ctx, m.opts.Notices, m.rdb, m.keys.Members())
	if err != nil {
		return fmt.Errorf("subscribe to membership: %w", err)
	}
	m.memberNotices, m.unwatch = ch, stop
	return nil
}

// watchLoop passes membership notices to refreshLoop, and asks it to read
// the view again whole for a notice it cannot apply and each time the
// subscription is made again (after a lost connection: notices sent
// meanwhile were lost).
func (m *Mesh) watchLoop(ctx context.Context) {
	ch := m.memberNotices
	for {
		select {
		case <-ctx.Done():
			return
		case v, ok := <-ch:
			if !ok {
				return
			}
			if msg, isMsg := v.(*redis.Message); isMsg {
				if strings.HasPrefix(msg.Payload, "leave ") {
					select {
					case m.adoptC <- struct{}{}:
					default:
					}
				}
				if n, ok := parseNotice(msg.Payload); ok {
					select {
					case m.noticeC <- n:
						continue
					default: // refreshLoop is behind: read it all again
					}
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

// refreshLoop applies notices (watchLoop), and reads the view again whole
// when asked and every membershipPoll. One goroutine does both, so that a
// notice is never undone by a whole read that began before it.
func (m *Mesh) refreshLoop(ctx context.Context) {
	t := time.NewTicker(membershipPoll + time.Duration(mrand.IntN(1000))*time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-m.noticeC:
			m.apply(ctx, n)
			continue
		case <-t.C:
		case <-m.refreshC:
		}
		if err := m.refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("cannot read membership", "err", err)
		}
		m.sweep(time.Now())
	}
}
