package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/wait"
)

// Run delivers the events of every subscription of the application until
// ctx ends, then stops its deliveries, hands its subscriptions back (so
// another sidecar takes them at once) and returns nil. Redis and Kafka
// errors are logged and retried; they do not end Run.
//
// Any number of sidecars run Run against the same Redis. Each group of
// subscriptions (group.go; a subscription without a group is a group of
// one) is delivered by exactly one of them at a time: the one holding its
// lease (a Redis key with a TTL, renewed every LeaseTTL/3, all of a
// sidecar's leases in a few script calls: renewLeases). The holder reads
// the topic from the group's committed offsets (in Redis) through its
// sidecar's feed of each partition (feed.go: one reader for all the groups
// of a topic that the sidecar delivers), delivers one event at a time to one
// member (the next only after the actor method returned for the previous
// one), retrying a failed delivery with backoff up to MaxAttempts, and
// commits the offset after each success or dead letter — only while it
// still holds the lease. A holder that
// dies stops renewing; its lease expires and another sidecar goes on from
// the last committed offset: delivery is at least once (the event in
// flight when a holder dies is delivered again). A holder that cannot
// renew pauses before its lease could have expired.
func (s *Service) Run(ctx context.Context) error {
	if s.opts.Deliver == nil || s.opts.SidecarID == "" {
		return errors.New("events: Run needs Options.Deliver and Options.SidecarID")
	}
	// Notices sent while the connection was down are lost, so a
	// re-subscription (a *redis.Subscription on notices) reads again too.
	notices, unwatch, err := store.Watch(ctx, s.opts.Notices, s.rdb, wakeChannel(s.keys))
	if err != nil {
		return nil // ctx ended
	}
	defer unwatch()

	r := newRunner(s)
	defer r.stopAll()
	go r.renewLeases(ctx)
	ticker := time.NewTicker(s.opts.Poll)
	defer ticker.Stop()
	metadata := time.NewTicker(5 * s.opts.Poll)
	defer metadata.Stop()
	// A change (a notice, a worker ending) is acted on at once, but no
	// sooner than minGap after the last reconcile: creating 10^4
	// subscriptions sends 10^4 notices, and each reconcile reads them all.
	minGap := s.opts.Poll / 10
	soon := time.NewTimer(time.Hour)
	defer soon.Stop()
	armed := false
	changed := func() {
		if !armed {
			armed = true
			soon.Reset(max(0, minGap-time.Since(r.last)))
		}
	}
	r.reconcile(ctx)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-metadata.C:
			// Once for every topic being read, not once per session:
			// sessions compare their partitions with it.
			r.refreshMetadata()
			continue
		case <-notices:
			wait.Drain(notices)
			r.stale = true
			changed()
			continue
		case <-s.wake:
			r.stale = true
			changed()
			continue
		case w := <-r.ended:
			if r.workers[w.unit] == w {
				delete(r.workers, w.unit)
			}
			changed()
			continue
		case <-soon.C:
			armed = false
		case <-ticker.C:
		}
		r.reconcile(ctx)
	}
}

// refreshMetadata reads the metadata of the topics being read once for
// all their sessions, and tells the sessions of a topic whose partitions
// changed (or that it sees for the first time: a session may have started
// on older metadata).
func (r *runner) refreshMetadata() {
	s := r.s
	ts := r.feeds.topics()
	if len(ts) == 0 {
		return
	}
	if err := s.kc.RefreshMetadata(ts...); err != nil {
		s.log.Debug("events: cannot refresh the metadata of the event topics", "err", err)
		return
	}
	parts := make(map[string]int, len(ts))
	changed := map[string]bool{}
	for _, t := range ts {
		ps, err := s.kc.Partitions(t)
		if err != nil {
			continue
		}
		parts[t] = len(ps)
		if before, seen := r.partitions[t]; !seen || before != len(ps) {
			changed[t] = true
		}
	}
	r.partitions = parts
	if len(changed) == 0 {
		return
	}
	for _, w := range r.workers {
		if changed[s.kafkaTopic(w.topic)] {
			select {
			case w.remeta <- struct{}{}:
			default:
			}
		}
	}
}

// runner is the state of one Run.
type runner struct {
	s       *Service
	feeds   *feeds
	workers map[string]*worker // by group unit name
	// leases are the workers whose leases renewLeases keeps.
	leasesMu sync.Mutex
	leases   map[*worker]struct{}
	ended    chan *worker
	// stopping is closed when Run returns: ended is no longer read.
	stopping chan struct{}
	base     time.Time // monotonic origin of lease deadlines
	// closing counts the partition readers of ended sessions that are
	// still closing, so that Run returns only once all have ended.
	closing sync.WaitGroup
	// freeSince is when (runner.now) each group beyond our share was
	// first seen without a lease: one left free for a grace period (its
	// runner is gone or slow) we take after all.
	freeSince map[string]time.Duration
	// parsed caches the decoded subscriptions by field, while their JSON
	// is unchanged.
	parsed map[string]member
	// groups are the subscriptions as last read, units their names in
	// order and leaseKeys their lease keys. reconcile reads them again
	// when stale (a change was announced on the wake channel) and every
	// rereadPolls polls as a last resort: not every poll, as thousands of
	// subscriptions are megabytes.
	groups    map[string][]member
	units     []string
	leaseKeys map[string]string
	stale     bool
	polls     int
	last      time.Time // when reconcile last ran
	// partitions counts each topic's partitions as refreshMetadata last
	// saw them.
	partitions map[string]int
}

func newRunner(s *Service) *runner {
	r := &runner{s: s, workers: map[string]*worker{}, leases: map[*worker]struct{}{},
		ended: make(chan *worker, 16), stopping: make(chan struct{}), base: time.Now()}
	r.feeds = newFeeds(s.kc)
	r.feeds.closed = r.closed
	r.feeds.outOfRange = func(t *tap, from, oldest int64) {
		if from >= 0 {
			s.log.Warn("events: committed offset no longer in the topic (deleted and created again, or past retention); reading from the oldest",
				"group", t.group, "topic", t.f.key.topic, "partition", t.f.key.p, "offset", from, "oldest", oldest)
		}
	}
	r.feeds.failed = func(topic string, p int32, err error) {
		s.log.Warn("events: cannot read an event topic; retrying", "topic", topic, "partition", p, "err", err)
	}
	return r
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

// reconcile stops the workers of groups that lost their last member,
// tells the others what members it sees, starts workers for groups whose
// lease it can take, and hands a group over when it holds more than its
// share.
func (r *runner) reconcile(ctx context.Context) {
	s := r.s
	defer func() { r.last = time.Now() }()
	if r.polls++; r.polls >= rereadPolls {
		r.stale = true
	}
	if r.groups == nil || r.stale {
		all, err := s.rdb.HGetAll(ctx, s.keys.Subscriptions()).Result()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("events: cannot read the subscriptions from Redis; retrying", "err", err)
			}
			return
		}
		r.groups, r.stale, r.polls = r.group(all), false, 0
		r.units = make([]string, 0, len(r.groups))
		leaseKeys := make(map[string]string, len(r.groups))
		for u := range r.groups {
			r.units = append(r.units, u)
			if leaseKeys[u] = r.leaseKeys[u]; leaseKeys[u] == "" {
				leaseKeys[u] = groupLeaseKey(s.keys, u)
			}
		}
		sort.Strings(r.units)
		r.leaseKeys = leaseKeys
		for u, w := range r.workers {
			if ms, ok := r.groups[u]; ok {
				w.see(ms)
			} else {
				w.cancel() // removed from the map when it has ended
			}
		}
	}
	groups := r.groups
	if len(groups) == 0 && len(r.workers) == 0 {
		// Nothing to deliver: no heartbeat either (most applications have
		// no subscription, and it was a quarter of an idle member's Redis
		// commands). The first subscription is announced, and every runner
		// is back at once.
		return
	}
	// Spread the groups over the live runners: each takes at most a fair
	// share, more only of those left free for a grace period (the other
	// runners may be gone or slow), and gives back what it holds beyond
	// its share once nothing is left free, so a runner that joins or comes
	// late gets its part.
	share, live := len(groups), 1
	if n, err := heartbeatScript.Run(ctx, s.rdb, []string{runnersKey(s.keys)}, s.opts.SidecarID,
		max(3*s.opts.Poll, s.opts.LeaseTTL).Milliseconds()).Int(); err == nil && n > 1 {
		live = n
		share = (len(groups) + live - 1) / live
	}
	var idle []string // groups we do not deliver, in order
	for _, u := range r.units {
		if _, running := r.workers[u]; !running {
			idle = append(idle, u)
		}
	}
	holders := make([]any, len(idle))
	if len(idle) > 0 {
		keys := make([]string, len(idle))
		for i, u := range idle {
			keys[i] = r.leaseKeys[u]
		}
		var err error
		if holders, err = s.rdb.MGet(ctx, keys...).Result(); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("events: cannot read the subscription leases from Redis; retrying", "err", err)
			}
			return
		}
	}
	now, grace := r.now(), 2*s.opts.Poll
	freeSince := map[string]time.Duration{}
	free, active := 0, r.active()
	for i, u := range idle {
		if h, _ := holders[i].(string); h != "" && h != s.opts.SidecarID {
			continue // another runner delivers it
		}
		if active >= share {
			since, seen := r.freeSince[u]
			if !seen {
				since = now
			}
			if now-since < grace {
				freeSince[u] = since
				free++
				continue
			}
		}
		first := groups[u][0]
		ok, err := acquireScript.Run(ctx, s.rdb, []string{groupLeaseKey(s.keys, u), s.keys.Subscriptions()},
			s.opts.SidecarID, s.opts.LeaseTTL.Milliseconds(), first.field, first.raw).Int()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("events: cannot take a subscription lease", "group", u, "err", err)
			}
			return
		}
		if ok == 1 {
			r.start(ctx, u, groups[u])
			active++
		}
	}
	r.freeSince = freeSince
	// All the excess at once: one a poll would take an hour to even out
	// thousands of groups.
	if excess := r.active() - share; live > 1 && free == 0 && excess > 0 {
		for _, w := range r.workers {
			if excess == 0 {
				break
			}
			if !w.handingOff() {
				s.log.Debug("events: handing a subscription group over to a runner below its share", "group", w.unit)
				w.handOff()
				excess--
			}
		}
	}
}

// rereadPolls is how many polls reconcile goes on with the subscriptions
// it read without a change being announced.
const rereadPolls = 60

// group sorts the subscriptions into their groups (members in field
// order), skipping any stored corrupt.
func (r *runner) group(all map[string]string) map[string][]member {
	parsed := make(map[string]member, len(all))
	out := map[string][]member{}
	for f, raw := range all {
		m, ok := r.parsed[f]
		if !ok || m.raw != raw {
			m = member{field: f, raw: raw}
			if err := json.Unmarshal([]byte(raw), &m.sub); err != nil {
				r.s.log.Error("events: a subscription is stored corrupt; not delivering it", "subscription", f, "err", err)
			}
			m.unit = m.sub.unit()
		}
		parsed[f] = m
		if m.sub.Topic == "" {
			continue // corrupt
		}
		u := m.unit
		out[u] = append(out[u], m)
	}
	for _, ms := range out {
		sort.Slice(ms, func(i, j int) bool { return ms[i].field < ms[j].field })
	}
	r.parsed = parsed
	return out
}

// heartbeatScript records that runner ARGV[1] is alive (by Redis's clock),
// forgets runners silent for ARGV[2] ms and returns how many are alive.
var heartbeatScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[2]))
return redis.call('ZCARD', KEYS[1])`)

func (r *runner) start(ctx context.Context, unit string, seen []member) {
	wctx, cancel := context.WithCancel(ctx)
	w := &worker{r: r, unit: unit, leaseKey: r.leaseKeys[unit], groupKey: groupKey(r.s.keys, unit),
		topic: seen[0].sub.Topic, cancel: cancel, done: make(chan struct{}),
		yield: make(chan struct{}), refresh: make(chan struct{}, 1), remeta: make(chan struct{}, 1)}
	w.seen.Store(&seen)
	none := "" // no version yet: the first renewal finds it changed
	w.version.Store(&none)
	w.validUntil.Store(int64(r.now() + r.s.opts.LeaseTTL*4/5))
	r.workers[unit] = w
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
	if err := releaseScript.Run(ctx, r.s.rdb, []string{w.leaseKey}, r.s.opts.SidecarID).Err(); err != nil {
		r.s.log.Debug("events: cannot release a subscription lease; it will expire", "group", w.unit, "err", err)
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

// renewScript extends our lease KEYS[1] (TTL ARGV[2] ms): 0 when it is
// not ours, 2 when the members of the group KEYS[2] changed since version
// ARGV[3], else 1.
var renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if redis.call('HGET', KEYS[2], 'v') ~= ARGV[3] then return 2 end
return 1`)

// releaseScript deletes our lease.
var releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// commitScript records the next offset ARGV[3] of partition ARGV[2] in the
// group KEYS[2] while we hold the lease KEYS[1], and renews the lease (TTL
// ARGV[4] ms): 0 when the lease is not ours, 2 when the members changed
// since version ARGV[5], else 1.
var commitScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('HGET', KEYS[2], 'v') ~= ARGV[5] then return 2 end
return 1`)

// worker delivers one group while its runner holds the lease.
type worker struct {
	r    *runner
	unit string
	// leaseKey and groupKey are the group's lease and hash in Redis.
	leaseKey, groupKey string
	topic              string
	cancel             context.CancelFunc
	done               chan struct{}
	// members and offsets are the group as last loaded (by the worker's
	// own goroutine only); version is its version, which the lease renewal
	// compares, and changed is set when that found another.
	members []member
	offsets map[string]string
	version atomic.Pointer[string]
	changed atomic.Bool
	// seen is what reconcile last saw of the group's members; refresh
	// tells the worker to load the group again when that differs from
	// what it has (a change, or a subscription to adopt).
	seen    atomic.Pointer[[]member]
	refresh chan struct{}
	// remeta says that the topic's partitions changed (or were first
	// seen by Run): the session compares them with what it reads.
	remeta chan struct{}
	// validUntil is when (runner.now) the lease may have expired for all
	// we know: deliveries pause past it.
	validUntil atomic.Int64
	// yield is closed to stop delivering after the event in hand and give
	// the lease back (see handOff).
	yield     chan struct{}
	yieldOnce sync.Once
	// loaded is members, for reconcile to compare.
	loaded atomic.Pointer[[]member]
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
	s.log.Debug("events: delivering a subscription group", "group", w.unit, "topic", w.topic)
	w.r.leasesMu.Lock()
	w.r.leases[w] = struct{}{}
	w.r.leasesMu.Unlock()
	defer func() {
		w.r.leasesMu.Lock()
		delete(w.r.leases, w)
		w.r.leasesMu.Unlock()
	}()
	backoff := time.Duration(0)
	for ctx.Err() == nil {
		err := w.session(ctx)
		if ctx.Err() != nil || errors.Is(err, errLeaseLost) || errors.Is(err, errHandedOff) || errors.Is(err, errNoMembers) {
			return
		}
		// A session that ended without reading (its topic is missing,
		// Kafka or Redis failed) never reached the select that hears a
		// hand-off: the worker gives the lease back here, or it would hold
		// it, renewed, for as long as the failure lasts.
		if w.handingOff() {
			return
		}
		backoff = min(max(2*backoff, s.opts.RetryMin), s.opts.RetryMax)
		if err != nil {
			s.log.Warn("events: subscription paused; retrying", "group", w.unit, "topic", w.topic, "err", err, "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		case <-w.yield:
			t.Stop()
			return
		}
	}
}

// renewLeases renews the leases of every worker every LeaseTTL/3, many
// in one script call (a sidecar may deliver thousands of subscriptions:
// one round trip each would cost Redis more than all else it does idle),
// cancelling a worker whose lease is lost and marking a changed group to
// be loaded again.
func (r *runner) renewLeases(ctx context.Context) {
	s := r.s
	t := time.NewTicker(s.opts.LeaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.leasesMu.Lock()
		ws := make([]*worker, 0, len(r.leases))
		for w := range r.leases {
			ws = append(ws, w)
		}
		r.leasesMu.Unlock()
		for len(ws) > 0 {
			n := min(len(ws), renewBatch)
			r.renewSome(ctx, ws[:n])
			ws = ws[n:]
		}
	}
}

// renewBatch bounds the leases renewed by one script call, which holds
// Redis for its whole run.
const renewBatch = 256

func (r *runner) renewSome(ctx context.Context, ws []*worker) {
	s := r.s
	keys := make([]string, 0, 2*len(ws))
	args := make([]any, 0, 2+len(ws))
	args = append(args, s.opts.SidecarID, s.opts.LeaseTTL.Milliseconds())
	for _, w := range ws {
		keys = append(keys, w.leaseKey, w.groupKey)
		args = append(args, *w.version.Load())
	}
	asked := r.now()
	res, err := renewManyScript.Run(ctx, s.rdb, keys, args...).Int64Slice()
	if err != nil || len(res) != len(ws) {
		if ctx.Err() == nil {
			s.log.Warn("events: cannot renew the subscription leases", "groups", len(ws), "err", err)
		}
		return
	}
	for i, w := range ws {
		if !w.renewed(int(res[i]), asked) {
			w.cancel()
		}
	}
}

// renewManyScript is renewScript for many leases at once: KEYS holds
// each lease and its group, ARGV the holder, the TTL and each group's
// version; it returns renewScript's answer for each.
var renewManyScript = redis.NewScript(`
local out = {}
for i = 1, #KEYS / 2 do
  local a = 1
  if redis.call('GET', KEYS[2*i-1]) ~= ARGV[1] then
    a = 0
  else
    redis.call('PEXPIRE', KEYS[2*i-1], ARGV[2])
    if redis.call('HGET', KEYS[2*i], 'v') ~= ARGV[2+i] then a = 2 end
  end
  out[i] = a
end
return out`)

// check renews the lease, reporting false when it is lost (the worker
// must stop); when the group's members changed, it marks them to be loaded
// again before the next delivery.
func (w *worker) check(ctx context.Context) (bool, error) {
	s := w.r.s
	asked := w.r.now()
	ok, err := renewScript.Run(ctx, s.rdb, []string{w.leaseKey, w.groupKey},
		s.opts.SidecarID, s.opts.LeaseTTL.Milliseconds(), *w.version.Load()).Int()
	if err != nil {
		return false, err
	}
	return w.renewed(ok, asked), nil
}

// renewed takes the answer of renewScript or commitScript to a question
// asked at asked: false when the lease is lost; else the lease is valid
// again, and a changed group is marked to be loaded again.
func (w *worker) renewed(answer int, asked time.Duration) bool {
	s := w.r.s
	if answer == 0 {
		s.log.Info("events: subscription lease lost or its group gone; stopping its delivery", "group", w.unit)
		return false
	}
	if answer == 2 {
		w.changed.Store(true)
	}
	w.validUntil.Store(int64(asked + s.opts.LeaseTTL*4/5))
	return true
}

// see records what reconcile saw of the group, and asks the worker to load
// the group again if its members differ.
func (w *worker) see(ms []member) {
	w.seen.Store(&ms)
	if ms := w.loaded.Load(); ms != nil && sameMembers(*ms, *w.seen.Load()) {
		return
	}
	select {
	case w.refresh <- struct{}{}:
	default:
	}
}

func sameMembers(a, b []member) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].field != b[i].field || a[i].raw != b[i].raw {
			return false
		}
	}
	return true
}

// errNoMembers ends a worker whose group has no member left.
var errNoMembers = errors.New("the group has no member left")

// load reads the group's members, version and offsets, adopting the
// subscriptions reconcile saw that are not members yet, and gives a group
// without a position the one its first member asks for (the topic's
// newest offsets, or the oldest).
func (w *worker) load(ctx context.Context) error {
	s := w.r.s
	for {
		seen := *w.seen.Load()
		keys := make([]string, 0, 2+len(seen))
		keys = append(keys, s.keys.Subscriptions(), w.groupKey)
		args := make([]any, 0, 2*len(seen))
		for _, m := range seen {
			keys = append(keys, legacyOffsetsKey(s.keys, m.field))
			args = append(args, m.field, m.raw)
		}
		res, err := loadScript.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil || len(res) != 2 {
			return fmt.Errorf("load the subscription group: %w", err)
		}
		g, subs := strs(res[0]), strs(res[1])
		hash := make(map[string]string, len(g)/2)
		for i := 0; i+1 < len(g); i += 2 {
			hash[g[i]] = g[i+1]
		}
		var members []member
		for i := 0; i+1 < len(subs); i += 2 {
			m := member{field: subs[i], raw: subs[i+1]}
			if json.Unmarshal([]byte(m.raw), &m.sub) == nil && m.sub.unit() == w.unit {
				members = append(members, m)
			}
		}
		sort.Slice(members, func(i, j int) bool { return members[i].field < members[j].field })
		if len(members) == 0 {
			return errNoMembers
		}
		if hash["p"] == "" {
			start, err := s.startOffsets(ctx, w.topic, members[0].sub.OffsetOldest)
			if err != nil {
				return fmt.Errorf("position a new subscription group: %w", err)
			}
			pargs := []any{s.opts.SidecarID}
			for p, off := range start {
				pargs = append(pargs, strconv.Itoa(int(p)), off)
			}
			ok, err := positionScript.Run(ctx, s.rdb, []string{w.leaseKey, w.groupKey}, pargs...).Int()
			if err != nil {
				return fmt.Errorf("position a new subscription group: %w", err)
			}
			if ok == 0 {
				return errLeaseLost
			}
			continue // load what was stored
		}
		v := hash["v"]
		w.members, w.offsets = members, hash
		w.version.Store(&v)
		w.loaded.Store(&members)
		w.changed.Store(false)
		return nil
	}
}

// strs converts a script's array of strings.
func strs(v any) []string {
	a, _ := v.([]any)
	out := make([]string, 0, len(a))
	for _, x := range a {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
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

// tapBuffer is how many records of one partition a session may have in
// hand before its subscriber is found slow (see feed).
const tapBuffer = 16

// errTopicMissing pauses a subscription whose topic does not exist (it
// was deleted): it resumes when the topic is created again.
var errTopicMissing = errors.New("topic does not exist")

// errPartitionsChanged restarts a session to read new partitions.
var errPartitionsChanged = errors.New("partitions changed")

// session reads the topic from the committed offsets and delivers until
// ctx ends or something needs a fresh start.
func (w *worker) session(ctx context.Context) error {
	s := w.r.s
	kt := s.kafkaTopic(w.topic)
	// The metadata sarama holds first (Run refreshes it for the topics
	// being read): thousands of sessions starting together must not ask
	// the broker each.
	parts, err := s.kc.Partitions(kt)
	if err != nil || len(parts) == 0 {
		if err := s.kc.RefreshMetadata(kt); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fmt.Errorf("kafka metadata of %s: %w", kt, err)
		}
		parts, err = s.kc.Partitions(kt)
	}
	if err != nil || len(parts) == 0 {
		return fmt.Errorf("%w: %s", errTopicMissing, w.topic)
	}
	if err := w.load(ctx); err != nil {
		return err
	}
	stored := w.offsets

	// Each partition is read through this sidecar's feed of it (feed.go),
	// which hands the session its records from the committed offset on.
	// The session takes one record at a time from msgs; a slow subscriber
	// leaves at most tapBuffer records per partition in memory before its
	// partitions are read for it alone.
	sctx, stop := context.WithCancel(ctx)
	msgs := make(chan *sarama.ConsumerMessage, tapBuffer)
	taps := make([]*tap, 0, len(parts))
	defer func() {
		stop()
		for _, t := range taps {
			w.r.feeds.leave(t) // no record is handed over after it returns
		}
	}()
	for _, p := range parts {
		off := int64(sarama.OffsetOldest) // resolved by a reader (OutOfRange)
		if v, ok := stored[strconv.Itoa(int(p))]; ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				off = n
			}
		}
		taps = append(taps, w.r.feeds.join(kt, p, off, w.unit, msgs, sctx.Done()))
	}

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.yield:
			return errHandedOff
		case <-w.refresh:
			if err := w.load(ctx); err != nil {
				return err
			}
		case <-w.remeta:
			// Partitions added by any sidecar: read them too (Run
			// refreshes the metadata of the topics being read and says
			// when a topic's partitions changed).
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
				m, checked = next, !w.changed.Load()
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
		ok, err := commitScript.Run(ctx, s.rdb, []string{w.leaseKey, w.groupKey},
			s.opts.SidecarID, strconv.Itoa(int(partition)), next, s.opts.LeaseTTL.Milliseconds(), *w.version.Load()).Int()
		if err == nil {
			return w.renewed(ok, asked), nil
		}
		if ctx.Err() != nil {
			return false, ctx.Err()
		}
		s.log.Warn("events: cannot commit a delivered event's offset; retrying", "group", w.unit, "err", err)
		if !wait.Sleep(ctx, backoff) {
			return false, ctx.Err()
		}
		backoff = min(2*backoff, s.opts.RetryMax)
	}
}

// deliver delivers one record to one member of the group, retrying with
// exponential backoff (each attempt to the next member) until it succeeds
// or is dead-lettered, while the lease is ours. checked says that the
// group was confirmed unchanged after m was read, so the first attempt
// needs no check: a member cancelled before m was read gets nothing more.
func (w *worker) deliver(ctx context.Context, m *sarama.ConsumerMessage, checked bool) error {
	s := w.r.s
	p, err := fromRecord(s.opts.App, m)
	if err != nil {
		s.log.Error("events: skipping a record that is not a readable CloudEvent", "group", w.unit,
			"topic", w.topic, "partition", m.Partition, "offset", m.Offset, "err", err)
		return nil
	}
	backoff := time.Duration(0)
	for attempt := 1; ; attempt++ {
		if !w.leaseValid(ctx) {
			return ctx.Err()
		}
		if !checked || attempt > 1 || w.changed.Load() {
			ok, err := w.check(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return err // the session starts again after a backoff
			}
			if !ok {
				w.cancel()
				return errLeaseLost
			}
		}
		if w.changed.Load() {
			if err := w.load(ctx); err != nil {
				return err
			}
		}
		to := pick(w.members, m.Partition, m.Offset, attempt)
		if to.sub.Sink != "" {
			err = s.deliverSink(ctx, to.sub, p, attempt)
		} else {
			err = w.deliverActor(ctx, to.sub, p)
		}
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		// A sink decides itself when to give up (its "retry").
		var rejected rejectedErr
		if errors.As(err, &rejected) || (to.sub.Sink == "" && attempt >= s.opts.MaxAttempts) {
			return w.deadLetter(ctx, m, to, attempt, err)
		}
		if w.handingOff() {
			return errHandedOff // the new holder retries it
		}
		backoff = min(max(2*backoff, s.opts.RetryMin), s.opts.RetryMax)
		s.log.Warn("events: delivery failed; will retry", "subscription", to.field, "topic", w.topic,
			"event", p.ev.ID(), "attempt", attempt, "err", oneLine(err.Error()), "retry_in", backoff)
		if !wait.Sleep(ctx, backoff) {
			return ctx.Err()
		}
	}
}

func (w *worker) deliverActor(ctx context.Context, sub Subscription, p published) error {
	arg, err := deliveryArg(p, sub.ContentType)
	if err != nil {
		return fmt.Errorf("encode event %s: %w", p.ev.ID(), err)
	}
	return w.r.s.opts.Deliver(withTraceContext(ctx, p.ev), sub.Actor.Type, sub.Actor.ID, sub.Path, "application/json", actorArgs(arg))
}

// closed records a reader that was closed: Run waits for it to end (its
// goroutine and connection), but a new session, a hand-off or the next
// worker need not wait out its parked fetch.
func (r *runner) closed(rd *kafka.PartitionReader) {
	r.closing.Add(1)
	go func() {
		defer r.closing.Done()
		<-rd.Done()
	}()
}
