package reminders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
)

// Options tune a Store. The zero value of each field means its default.
type Options struct {
	// Lease is how long a scheduler holds a claimed reminder before any
	// scheduler may fire it again: it bounds how late a reminder is when the
	// sidecar that claimed it is killed. Fire must return well within it.
	// Default 30s.
	Lease time.Duration
	// RetryDelay is how soon a reminder whose firing failed is due again. Default 1s.
	RetryDelay time.Duration
	// LateAfter: a reminder fired later than this after its target time is
	// logged as late. Default 1s.
	LateAfter time.Duration
	// Concurrency is how many firings one scheduler has in flight at most. Default 16.
	Concurrency int
	// IdlePoll is the longest a scheduler sleeps without looking at the
	// schedule, should a wake-up notice be lost (Redis reconnecting). Default 1s.
	IdlePoll time.Duration
	// MaxBodyBytes bounds PUT bodies; larger ones are answered 413. Default 8 MiB.
	MaxBodyBytes int64
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Cancelled, if set, is told how many reminders each cancellation
	// removed (KAR's kar_actors_cancelled_reminders_gauge).
	Cancelled func(n int)
	// Notices is the sidecar's pub/sub connection Run hears Schedule's
	// announcements on (nil: Run opens one of its own).
	Notices *store.Notices
}

func (o Options) withDefaults() Options {
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	if o.LateAfter <= 0 {
		o.LateAfter = time.Second
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.IdlePoll <= 0 {
		o.IdlePoll = time.Second
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 8 << 20
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// Store is the reminders of one application in Redis.
type Store struct {
	rdb  redis.UniversalClient
	keys store.Keys
	opts Options
	log  *slog.Logger
	// wake tells this process's scheduler at once that the schedule changed
	// (other processes' schedulers hear it through pub/sub).
	wake chan struct{}
	// clock is the local clock (replaced in tests to skew it); skew is how
	// far Redis's clock is ahead of it, in ns, as of the last claim.
	clock func() time.Time
	skew  atomic.Int64
}

// New returns the reminders store of the application keys belongs to.
func New(rdb redis.UniversalClient, keys store.Keys, opts Options) *Store {
	opts = opts.withDefaults()
	return &Store{rdb: rdb, keys: keys, opts: opts, log: opts.Logger, wake: make(chan struct{}, 1), clock: time.Now}
}

// wakeChannel is the pub/sub channel on which Schedule announces a change of
// the schedule to every scheduler.
func wakeChannel(keys store.Keys) string { return keys.ReminderWake() }

// ErrNotFound reports a reminder that does not exist.
var ErrNotFound = errors.New("reminder not found")

// Schedule creates or replaces reminder r and reports whether it is new.
// A firing of the replaced reminder in progress completes without
// rescheduling it (r wins).
func (s *Store) Schedule(ctx context.Context, r Reminder) (bool, error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encode reminder %s: %w", r.field(), err)
	}
	var created int64
	f := r.field()
	// The reminder lives with its actor instance, its entry in the
	// application's schedule: two slots of a Redis Cluster, so two steps.
	// The reminder is written first: a claim that sees the entry of the
	// replaced reminder meanwhile finds the new one not yet due and puts
	// its entry back (claim); the order the other way round would let such
	// a claim drop the entry of a reminder about to be written.
	created, err = s.rdb.HSet(ctx, s.keys.Reminders(r.Actor.Type, r.Actor.ID), f, b).Result()
	if err == nil {
		err = s.rdb.ZAdd(ctx, s.keys.ReminderSchedule(), redis.Z{Score: float64(score(r.TargetTime)), Member: f}).Err()
	}
	if err != nil {
		return false, fmt.Errorf("schedule reminder %s: %w", f, err)
	}
	s.notify(ctx)
	return created == 1, nil
}

// notify wakes the schedulers; a lost notice only delays firing by IdlePoll.
func (s *Store) notify(ctx context.Context) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if err := s.rdb.Publish(ctx, wakeChannel(s.keys), "").Err(); err != nil {
		s.log.Debug("reminders: cannot announce a schedule change", "err", err)
	}
}

// Get returns one reminder, or ErrNotFound.
func (s *Store) Get(ctx context.Context, actor Actor, id string) (Reminder, error) {
	v, err := s.rdb.HGet(ctx, s.keys.Reminders(actor.Type, actor.ID), field(actor.Type, actor.ID, id)).Result()
	if errors.Is(err, redis.Nil) {
		return Reminder{}, ErrNotFound
	}
	if err != nil {
		return Reminder{}, fmt.Errorf("read reminder %s: %w", id, err)
	}
	var r Reminder
	if err := json.Unmarshal([]byte(v), &r); err != nil {
		return Reminder{}, fmt.Errorf("reminder %s is stored corrupt: %w", id, err)
	}
	return r, nil
}

// List returns the reminders of one actor instance, by id.
func (s *Store) List(ctx context.Context, actor Actor) ([]Reminder, error) {
	entries, err := s.scan(ctx, actor)
	if err != nil {
		return nil, err
	}
	out := make([]Reminder, 0, len(entries))
	for f, v := range entries {
		var r Reminder
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			return nil, fmt.Errorf("reminder %s is stored corrupt: %w", f, err)
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// scan returns field → JSON of the reminders of one instance.
func (s *Store) scan(ctx context.Context, actor Actor) (map[string]string, error) {
	out, err := s.rdb.HGetAll(ctx, s.keys.Reminders(actor.Type, actor.ID)).Result()
	if err != nil {
		return nil, fmt.Errorf("list reminders of %s/%s: %w", actor.Type, actor.ID, err)
	}
	return out, nil
}

// Cancel removes one reminder, or returns ErrNotFound.
func (s *Store) Cancel(ctx context.Context, actor Actor, id string) error {
	n, err := s.remove(ctx, actor, []string{field(actor.Type, actor.ID, id)})
	if err != nil {
		return fmt.Errorf("cancel reminder %s: %w", id, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// CancelAll removes every reminder of an actor instance (also when the
// actor is removed) and returns how many there were.
func (s *Store) CancelAll(ctx context.Context, actor Actor) (int, error) {
	entries, err := s.scan(ctx, actor)
	if err != nil {
		return 0, err
	}
	fields := make([]string, 0, len(entries))
	for f := range entries {
		fields = append(fields, f)
	}
	n, err := s.remove(ctx, actor, fields)
	if err != nil {
		return n, fmt.Errorf("cancel reminders of %s/%s: %w", actor.Type, actor.ID, err)
	}
	return n, nil
}

// remove removes reminders of one actor instance: their schedule entries
// first, so that a claim meanwhile finds no entry rather than an entry
// without its reminder; a reminder scheduled again meanwhile loses its
// reminder and then its entry (to a claim): the cancellation wins.
func (s *Store) remove(ctx context.Context, actor Actor, fields []string) (int, error) {
	total := 0
	for len(fields) > 0 {
		batch := fields[:min(len(fields), 1000)]
		fields = fields[len(batch):]
		members := make([]any, len(batch))
		for i, f := range batch {
			members[i] = f
		}
		if err := s.rdb.ZRem(ctx, s.keys.ReminderSchedule(), members...).Err(); err != nil {
			return total, err
		}
		n, err := s.rdb.HDel(ctx, s.keys.Reminders(actor.Type, actor.ID), batch...).Result()
		if err != nil {
			return total, err
		}
		total += int(n)
	}
	if s.opts.Cancelled != nil && total > 0 {
		s.opts.Cancelled(total)
	}
	return total, nil
}

// claimScript atomically takes up to ARGV[2] entries due now from the
// schedule by moving their score to the claim deadline (now + ARGV[1] ms),
// and reports the earliest score left in the schedule (after the claims),
// so the caller knows how long to sleep. "Now" is Redis's clock, the one
// clock all sidecars share: a sidecar whose own clock is off (a laptop in
// a hybrid mesh) neither fires early nor spins.
// KEYS[1] = schedule. Reply: {now ms, next score or "", field1, field2, ...}.
var claimScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {tostring(now), ''}
if tonumber(ARGV[2]) > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
  for _, f in ipairs(due) do
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), f)
    out[#out + 1] = f
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = first[2] end
return out`)

// moveScript moves the schedule entry ARGV[1] to score ARGV[3] (removes it
// when ARGV[3] == ""), if it is still at ARGV[2], the score of the
// caller's claim: a reminder scheduled again or claimed by another
// scheduler meanwhile keeps its new entry. KEYS[1] = schedule.
var moveScript = redis.NewScript(`
local cur = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not cur or tonumber(cur) ~= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
end
return 1`)

// finishScript ends a claim on the reminder, unless it changed meanwhile
// (it was rescheduled, cancelled, or fired by another scheduler after our
// claim expired): then the change stands. ARGV[3] == "" removes the
// reminder, otherwise it becomes ARGV[3].
// KEYS[1] = the instance's reminders; ARGV[1] = field, ARGV[2] = JSON as claimed.
var finishScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
end
return 1`)

type claimed struct {
	field, json string
	// until is the score of the claim's schedule entry (its deadline, ms).
	until int64
}

// claim takes up to n due reminders. It also returns Redis's time and how
// long until the schedule's earliest remaining entry is due (ok == false
// when the schedule is empty).
//
// The schedule entries are claimed first (one script on the schedule's
// slot), then the claimed reminders read from their instances' slots. An
// entry whose reminder is gone (cancelled between its two steps) is
// dropped; one whose reminder is not due yet (scheduled again meanwhile,
// or a periodic reminder whose firing was recorded but not its next
// entry) is put back at its target time.
func (s *Store) claim(ctx context.Context, n int) (batch []claimed, redisNow time.Time, untilNext time.Duration, ok bool, err error) {
	res, err := claimScript.Run(ctx, s.rdb, []string{s.keys.ReminderSchedule()}, s.opts.Lease.Milliseconds(), n).StringSlice()
	if err != nil {
		return nil, time.Time{}, 0, false, err
	}
	if len(res) < 2 {
		return nil, time.Time{}, 0, false, fmt.Errorf("claim script answered %q", res)
	}
	nowMs, err := strconv.ParseInt(res[0], 10, 64)
	if err != nil {
		return nil, time.Time{}, 0, false, fmt.Errorf("claim script answered a bad time %q: %w", res[0], err)
	}
	if res[1] != "" {
		next, err := strconv.ParseFloat(res[1], 64)
		if err != nil {
			return nil, time.Time{}, 0, false, fmt.Errorf("schedule holds a bad score %q: %w", res[1], err)
		}
		untilNext, ok = time.Duration(int64(next)-nowMs)*time.Millisecond, true
	}
	fields := res[2:]
	if len(fields) == 0 {
		return nil, time.UnixMilli(nowMs), untilNext, ok, nil
	}
	until := nowMs + s.opts.Lease.Milliseconds()
	gets := make([]*redis.StringCmd, len(fields))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, f := range fields {
			typ, id, _ := splitField(f)
			gets[i] = p.HGet(ctx, s.keys.Reminders(typ, id), f)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		// The claims expire and the reminders come due again.
		return nil, time.Time{}, 0, false, err
	}
	batch = make([]claimed, 0, len(fields))
	for i, f := range fields {
		v, err := gets[i].Result()
		if errors.Is(err, redis.Nil) {
			s.move(ctx, f, until, "")
			continue
		}
		if err != nil {
			return nil, time.Time{}, 0, false, err
		}
		var r Reminder
		if json.Unmarshal([]byte(v), &r) == nil && score(r.TargetTime) > nowMs {
			s.move(ctx, f, until, strconv.FormatInt(score(r.TargetTime), 10))
			if due := time.Duration(score(r.TargetTime)-nowMs) * time.Millisecond; !ok || due < untilNext {
				untilNext, ok = due, true
			}
			continue
		}
		batch = append(batch, claimed{field: f, json: v, until: until})
	}
	return batch, time.UnixMilli(nowMs), untilNext, ok, nil
}

// move moves the schedule entry f claimed until `until` to score to ("":
// removes it); a failure leaves the claim to expire.
func (s *Store) move(ctx context.Context, f string, until int64, to string) {
	if err := moveScript.Run(ctx, s.rdb, []string{s.keys.ReminderSchedule()}, f, until, to).Err(); err != nil {
		s.log.Debug("reminders: cannot move a schedule entry; its claim will expire", "reminder", f, "err", err)
	}
}

// finish ends the claim c: next == "" removes the reminder, otherwise it
// becomes next, due at dueMs. The reminder changes first, then its
// schedule entry, each only if unchanged since the claim; a scheduler
// stopped between the two leaves the entry at the claim's deadline, where
// claim finds it (and a periodic reminder not due yet).
func (s *Store) finish(ctx context.Context, c claimed, next string, dueMs int64) error {
	typ, id, _ := splitField(c.field)
	done, err := finishScript.Run(ctx, s.rdb, []string{s.keys.Reminders(typ, id)}, c.field, c.json, next).Int()
	if err != nil || done == 0 {
		return err
	}
	to := ""
	if next != "" {
		to = strconv.FormatInt(dueMs, 10)
	}
	return moveScript.Run(ctx, s.rdb, []string{s.keys.ReminderSchedule()}, c.field, c.until, to).Err()
}
