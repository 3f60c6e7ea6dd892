package reminders

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
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
func (s *Store) Schedule(ctx context.Context, r Reminder) (created bool, err error) {
	b, err := json.Marshal(r)
	if err != nil {
		return false, fmt.Errorf("encode reminder %s: %w", r.field(), err)
	}
	f := r.field()
	var hset *redis.IntCmd
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		hset = p.HSet(ctx, s.keys.Reminders(), f, b)
		p.ZAdd(ctx, s.keys.ReminderSchedule(), redis.Z{Score: float64(score(r.TargetTime)), Member: f})
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("schedule reminder %s: %w", f, err)
	}
	s.notify(ctx)
	return hset.Val() == 1, nil
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
	v, err := s.rdb.HGet(ctx, s.keys.Reminders(), field(actor.Type, actor.ID, id)).Result()
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
	prefix := instancePrefix(actor.Type, actor.ID)
	out := map[string]string{}
	var cursor uint64
	for {
		kv, next, err := s.rdb.HScan(ctx, s.keys.Reminders(), cursor, globEscape(prefix)+"*", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("list reminders of %s/%s: %w", actor.Type, actor.ID, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if strings.HasPrefix(kv[i], prefix) {
				out[kv[i]] = kv[i+1]
			}
		}
		if next == 0 {
			return out, nil
		}
		cursor = next
	}
}

// Cancel removes one reminder, or returns ErrNotFound.
func (s *Store) Cancel(ctx context.Context, actor Actor, id string) error {
	n, err := s.remove(ctx, []string{field(actor.Type, actor.ID, id)})
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
	n, err := s.remove(ctx, fields)
	if err != nil {
		return n, fmt.Errorf("cancel reminders of %s/%s: %w", actor.Type, actor.ID, err)
	}
	return n, nil
}

func (s *Store) remove(ctx context.Context, fields []string) (int, error) {
	total := 0
	for len(fields) > 0 {
		batch := fields[:min(len(fields), 1000)]
		fields = fields[len(batch):]
		var hdel *redis.IntCmd
		members := make([]any, len(batch))
		for i, f := range batch {
			members[i] = f
		}
		_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			hdel = p.HDel(ctx, s.keys.Reminders(), batch...)
			p.ZRem(ctx, s.keys.ReminderSchedule(), members...)
			return nil
		})
		if err != nil {
			return total, err
		}
		total += int(hdel.Val())
	}
	if s.opts.Cancelled != nil && total > 0 {
		s.opts.Cancelled(total)
	}
	return total, nil
}

// claimScript atomically takes up to ARGV[2] reminders due now by moving
// their score to the claim deadline (now + ARGV[1] ms), and reports the
// earliest score left in the schedule (after the claims), so the caller
// knows how long to sleep. "Now" is Redis's clock, the one clock all
// sidecars share: a sidecar whose own clock is off (a laptop in a hybrid
// mesh) neither fires early nor spins. Schedule entries without a
// reminder are dropped.
// KEYS[1] = schedule, KEYS[2] = reminders hash.
// Reply: {now ms, next score or "", field1, json1, field2, json2, ...}.
var claimScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {tostring(now), ''}
if tonumber(ARGV[2]) > 0 then
  local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[2])
  for _, f in ipairs(due) do
    local v = redis.call('HGET', KEYS[2], f)
    if v then
      redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), f)
      out[#out + 1] = f
      out[#out + 1] = v
    else
      redis.call('ZREM', KEYS[1], f)
    end
  end
end
local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if first[2] then out[2] = first[2] end
return out`)

// finishScript ends a claim, unless the reminder changed meanwhile (it was
// rescheduled, cancelled, or fired by another scheduler after our claim
// expired): then the change stands. ARGV[3] == "" removes the reminder,
// otherwise it becomes ARGV[3] due at ARGV[4].
// KEYS[1] = schedule, KEYS[2] = reminders hash; ARGV[1] = field, ARGV[2] = JSON as claimed.
var finishScript = redis.NewScript(`
if redis.call('HGET', KEYS[2], ARGV[1]) ~= ARGV[2] then
  return 0
end
if ARGV[3] == '' then
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
  redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
end
return 1`)

type claimed struct {
	field, json string
}

// claim takes up to n due reminders. It also returns Redis's time and how
// long until the schedule's earliest remaining entry is due (ok == false
// when the schedule is empty).
func (s *Store) claim(ctx context.Context, n int) (batch []claimed, redisNow time.Time, untilNext time.Duration, ok bool, err error) {
	res, err := claimScript.Run(ctx, s.rdb,
		[]string{s.keys.ReminderSchedule(), s.keys.Reminders()},
		s.opts.Lease.Milliseconds(), n).StringSlice()
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
	batch = make([]claimed, 0, (len(res)-2)/2)
	for i := 2; i+1 < len(res); i += 2 {
		batch = append(batch, claimed{field: res[i], json: res[i+1]})
	}
	return batch, time.UnixMilli(nowMs), untilNext, ok, nil
}

// finish ends the claim c: next == "" removes the reminder, otherwise it
// becomes next, due at dueMs.
func (s *Store) finish(ctx context.Context, c claimed, next string, dueMs int64) error {
	return finishScript.Run(ctx, s.rdb,
		[]string{s.keys.ReminderSchedule(), s.keys.Reminders()},
		c.field, c.json, next, dueMs).Err()
}
