package reminders

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/wait"
)

// FireFunc delivers a due reminder (the sidecar sends it as an asynchronous
// actor call). It returns nil once the call is accepted durably; an error
// makes the reminder due again after Options.RetryDelay.
type FireFunc func(ctx context.Context, r Reminder) error

// Run fires due reminders until ctx is cancelled, then waits for the
// firings in progress and returns nil. Errors talking to Redis are logged
// and retried with backoff; they do not end Run.
//
// Many schedulers may run against the same Redis. Each due reminder is
// claimed by one atomic script that moves its schedule entry to a claim
// deadline (now + Options.Lease): no other scheduler sees it due until
// then. After firing, the claimant replaces the entry (next occurrence of a
// periodic reminder, computed from the previous target time, skipping
// occurrences already past) or removes it (one-shot) — unless the reminder
// changed meanwhile. A scheduler killed between claim and completion leaves
// the entry to come due again at the deadline, so nothing is lost; the
// price is a second firing when a scheduler dies after firing but before
// completing, or when fire outlasts the lease.
//
// Run sleeps until the earliest entry is due, and wakes early when
// Schedule announces a change (in this process directly, in others through
// Redis pub/sub), or after Options.IdlePoll at the latest.
func (s *Store) Run(ctx context.Context, fire FireFunc) error {
	notices, unwatch, err := store.Watch(ctx, s.opts.Notices, s.rdb, wakeChannel(s.keys))
	if err != nil {
		return nil // ctx ended
	}
	defer unwatch()

	slots := make(chan struct{}, s.opts.Concurrency) // a token per firing in progress
	freed := make(chan struct{}, 1)
	var wg sync.WaitGroup
	defer wg.Wait()

	timer := time.NewTimer(0)
	defer timer.Stop()
	backoff := time.Duration(0)
	for {
		free := cap(slots) - len(slots)
		batch, redisNow, untilNext, pending, err := s.claim(ctx, free)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(2*backoff, 50*time.Millisecond), 2*time.Second)
			s.log.Warn("reminders: cannot read the schedule from Redis; retrying", "err", err, "retry_in", backoff)
			if !wait.Sleep(ctx, backoff) {
				return nil
			}
			continue
		}
		backoff = 0
		s.skew.Store(int64(redisNow.Sub(s.clock())))
		for _, c := range batch {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.fireOne(ctx, c, fire)
				<-slots
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
		}
		if len(batch) == free && free > 0 {
			continue // there may be more due
		}

		idle := s.opts.IdlePoll
		if pending {
			idle = min(idle, untilNext) // > 0: the claim took everything due
		}
		var slotFreed <-chan struct{} // nil (never ready) unless all slots are taken
		if len(slots) == cap(slots) {
			idle, slotFreed = s.opts.IdlePoll, freed
		}
		timer.Reset(idle)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-notices:
			wait.Drain(notices)
		case <-s.wake:
		case <-slotFreed:
		}
		timer.Stop()
	}
}

// now is Redis's clock as last seen by a claim, read through the local
// monotonic clock.
func (s *Store) now() time.Time { return s.clock().Add(time.Duration(s.skew.Load())) }

// fireOne fires a claimed reminder and completes its claim.
func (s *Store) fireOne(ctx context.Context, c claimed, fire FireFunc) {
	var r Reminder
	if err := json.Unmarshal([]byte(c.json), &r); err != nil {
		s.log.Error("reminders: dropping a reminder stored corrupt", "reminder", c.field, "err", err)
		s.complete(ctx, c, "", 0)
		return
	}
	if late := s.now().Sub(r.TargetTime); late > s.opts.LateAfter {
		s.log.Warn("reminders: firing late", "actor_type", r.Actor.Type, "actor_id", r.Actor.ID,
			"reminder", r.ID, "path", r.Path, "target", r.TargetTime, "late", late)
	}
	if err := fire(ctx, r); err != nil {
		retry := s.now().Add(s.opts.RetryDelay)
		s.log.Warn("reminders: firing failed; will retry", "actor_type", r.Actor.Type, "actor_id", r.Actor.ID,
			"reminder", r.ID, "err", err, "retry_at", retry)
		s.complete(ctx, c, c.json, score(retry))
		return
	}
	if r.Period <= 0 {
		s.complete(ctx, c, "", 0)
		return
	}
	next, skipped := nextTarget(r.TargetTime, r.Period, s.now())
	if skipped > 0 {
		s.log.Warn("reminders: skipping occurrences of a periodic reminder that is behind", "actor_type", r.Actor.Type,
			"actor_id", r.Actor.ID, "reminder", r.ID, "skipped", skipped, "next", next)
	}
	r.TargetTime = next
	b, err := json.Marshal(r)
	if err != nil { // cannot happen for a Reminder; keep the claim to expire
		s.log.Error("reminders: cannot encode a reminder", "reminder", c.field, "err", err)
		return
	}
	s.complete(ctx, c, string(b), score(next))
}

// complete ends a claim, retrying while Redis is unreachable for at most
// the lease (after which another scheduler may take the reminder anyway).
// It outlives ctx briefly so that a scheduler being stopped still records
// what it fired.
func (s *Store) complete(ctx context.Context, c claimed, next string, dueMs int64) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.opts.Lease, 5*time.Second))
	defer cancel()
	backoff := 20 * time.Millisecond
	for {
		err := s.finish(cctx, c, next, dueMs)
		if err == nil {
			return
		}
		if !wait.Sleep(cctx, backoff) {
			s.log.Warn("reminders: cannot record a firing in Redis; the reminder will come due again when its claim expires",
				"reminder", c.field, "err", err, "lease", s.opts.Lease)
			return
		}
		backoff = min(2*backoff, time.Second)
	}
}
