package reminders

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

var foo = Actor{Type: "Foo", ID: "1"}

func TestOneShotFiresOnceOnTime(t *testing.T) {
	b := backend(t)
	s, _ := newStore(t, b.RedisAddr(), Options{})
	rec := &recorder{}
	runScheduler(t, s, rec.fire)

	// Scheduled while the scheduler sleeps (it must be woken for it).
	r := Reminder{Actor: foo, ID: "once", Path: "/remind", TargetTime: time.Now().Add(150 * time.Millisecond), EncodedData: `{"a":1}`}
	schedule(t, s, r)
	testenv.Eventually(t, 5*time.Second, func() bool { return rec.count("once") == 1 }, "the reminder fires")
	testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s, r) }, "a one-shot reminder is removed once fired")

	f := rec.snapshot()[0]
	if f.r.Path != "/remind" || f.r.EncodedData != `{"a":1}` || f.r.Actor != foo || !f.r.TargetTime.Equal(r.TargetTime) {
		t.Fatalf("fired %+v, want %+v", f.r, r)
	}
	late := f.at.Sub(r.TargetTime)
	if late < 0 {
		t.Fatalf("fired %v early", -late)
	}
	// Tens of milliseconds on an idle machine; allow for a loaded 2-core one.
	if late > 250*time.Millisecond {
		t.Fatalf("fired %v late", late)
	}
	if n := rec.count("once"); n != 1 {
		t.Fatalf("fired %d times", n)
	}
}

func TestPeriodicFiresRepeatedly(t *testing.T) {
	b := backend(t)
	s, _ := newStore(t, b.RedisAddr(), Options{})
	rec := &recorder{}
	runScheduler(t, s, rec.fire)

	t0 := time.Now().Add(50 * time.Millisecond)
	r := Reminder{Actor: foo, ID: "tick", Path: "/tick", TargetTime: t0, Period: 40 * time.Millisecond}
	schedule(t, s, r)
	testenv.Eventually(t, 10*time.Second, func() bool { return rec.count("tick") >= 5 }, "five occurrences")
	if err := s.Cancel(context.Background(), foo, "tick"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s, r) }, "a cancelled periodic reminder stays cancelled")

	// Occurrences are on the grid t0 + k·period, strictly increasing (a
	// loaded machine may skip some, never repeat one).
	var last time.Time
	for i, f := range rec.snapshot() {
		off := f.r.TargetTime.Sub(t0)
		if off%r.Period != 0 {
			t.Fatalf("occurrence %d at t0+%v is off the period grid", i, off)
		}
		if i > 0 && !f.r.TargetTime.After(last) {
			t.Fatalf("occurrence %d target %v not after %v", i, f.r.TargetTime, last)
		}
		if f.at.Before(f.r.TargetTime) {
			t.Fatalf("occurrence %d fired early", i)
		}
		last = f.r.TargetTime
	}
}

func TestTwoSchedulersFireEachOccurrenceOnce(t *testing.T) {
	b := backend(t)
	var mu sync.Mutex
	fired := map[string]int{} // id@target → count
	byScheduler := [2]int{}
	fireAs := func(i int) FireFunc {
		return func(_ context.Context, r Reminder) error {
			mu.Lock()
			defer mu.Unlock()
			fired[r.ID+"@"+r.TargetTime.Format(time.RFC3339Nano)]++
			byScheduler[i]++
			return nil
		}
	}
	s1, _ := newStore(t, b.RedisAddr(), Options{})
	s2, _ := newStore(t, b.RedisAddr(), Options{})
	runScheduler(t, s1, fireAs(0))
	runScheduler(t, s2, fireAs(1))

	const n = 200
	start := time.Now().Add(100 * time.Millisecond)
	for i := 0; i < n; i++ {
		schedule(t, s1, Reminder{Actor: foo, ID: fmt.Sprintf("r%03d", i), Path: "/x", TargetTime: start.Add(time.Duration(i) * 2 * time.Millisecond)})
	}
	tick := Reminder{Actor: foo, ID: "tick", Path: "/tick", TargetTime: start, Period: 20 * time.Millisecond}
	schedule(t, s2, tick)

	countTicks := func() int {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for key := range fired {
			if strings.HasPrefix(key, "tick@") {
				k++
			}
		}
		return k
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(fired) >= n
	}, "all one-shot reminders fire")
	testenv.Eventually(t, 20*time.Second, func() bool { return countTicks() >= 15 }, "15 occurrences of the periodic reminder")
	if err := s1.Cancel(context.Background(), foo, "tick"); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s1, tick) }, "the periodic reminder is cancelled")
	for i := 0; i < n; i++ {
		r := Reminder{Actor: foo, ID: fmt.Sprintf("r%03d", i)}
		testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s1, r) }, "reminder %s removed", r.ID)
	}

	mu.Lock()
	defer mu.Unlock()
	for key, c := range fired {
		if c != 1 {
			t.Errorf("%s fired %d times", key, c)
		}
	}
	t.Logf("firings by scheduler: %v", byScheduler)
}

func TestSchedulerRestartFiresWhatWasDue(t *testing.T) {
	b := backend(t, func(o *devenv.Options) { o.DataDir = t.TempDir() })
	s, _ := newStore(t, b.RedisAddr(), Options{})
	rec := &recorder{}
	stop := runScheduler(t, s, rec.fire)
	stop()

	// Due while no scheduler runs, one of them before Redis itself restarts.
	past := Reminder{Actor: foo, ID: "past", Path: "/p", TargetTime: time.Now().Add(-time.Minute)}
	soon := Reminder{Actor: foo, ID: "soon", Path: "/s", TargetTime: time.Now().Add(100 * time.Millisecond), Period: time.Hour}
	schedule(t, s, past)
	schedule(t, s, soon)
	if err := b.StopRedis(false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}

	s2, logs := newStore(t, b.RedisAddr(), Options{})
	runScheduler(t, s2, rec.fire)
	testenv.Eventually(t, 10*time.Second, func() bool { return rec.count("past") == 1 && rec.count("soon") == 1 }, "both reminders fire after the restart")
	testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s2, past) }, "the one-shot reminder is removed")
	want := soon.TargetTime.Add(time.Hour)
	testenv.Eventually(t, 5*time.Second, func() bool {
		got, err := s2.Get(context.Background(), foo, "soon")
		return err == nil && got.TargetTime.Equal(want)
	}, "the periodic reminder is next due an hour after its first target, %v", want)
	testenv.Eventually(t, 5*time.Second, func() bool { return strings.Contains(logs.String(), "firing late") }, "the late reminder is logged")
}

func TestFireErrorIsRetried(t *testing.T) {
	b := backend(t)
	s, logs := newStore(t, b.RedisAddr(), Options{RetryDelay: 30 * time.Millisecond})
	rec := &recorder{failFor: map[string]int{"flaky": 2}}
	runScheduler(t, s, rec.fire)

	r := Reminder{Actor: foo, ID: "flaky", Path: "/f", TargetTime: time.Now()}
	schedule(t, s, r)
	testenv.Eventually(t, 10*time.Second, func() bool { return rec.count("flaky") == 3 }, "two failures, then success")
	testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s, r) }, "removed after the successful firing")
	calls := rec.snapshot()
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].at.Sub(calls[i-1].at); gap < 30*time.Millisecond {
			t.Errorf("retry %d after %v, before the retry delay", i, gap)
		}
	}
	if !strings.Contains(logs.String(), "firing failed; will retry") || !strings.Contains(logs.String(), errFire.Error()) {
		t.Errorf("failures not logged:\n%s", logs)
	}
}

// A sidecar killed after claiming a reminder and before firing it: its
// claim expires and another scheduler fires the reminder.
func TestExpiredClaimIsFiredByAnother(t *testing.T) {
	b := backend(t)
	lease := 200 * time.Millisecond
	dead, _ := newStore(t, b.RedisAddr(), Options{Lease: lease})
	r := Reminder{Actor: foo, ID: "orphan", Path: "/o", TargetTime: time.Now().Add(-time.Millisecond)}
	schedule(t, dead, r)
	claimedAt := time.Now()
	got, _, _, _, err := dead.claim(context.Background(), 10)
	if err != nil || len(got) != 1 {
		t.Fatalf("claim: %v, %d claimed", err, len(got))
	}

	live, _ := newStore(t, b.RedisAddr(), Options{Lease: lease})
	rec := &recorder{}
	runScheduler(t, live, rec.fire)
	testenv.Eventually(t, 10*time.Second, func() bool { return rec.count("orphan") == 1 }, "the orphaned reminder fires")
	if at := rec.snapshot()[0].at; at.Sub(claimedAt) < lease-5*time.Millisecond {
		t.Fatalf("fired %v after the claim, before its lease of %v ran out", at.Sub(claimedAt), lease)
	}
	testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, live, r) }, "removed once fired")

	// The dead claimant's late completion must not resurrect or reschedule it.
	if err := dead.finish(context.Background(), got[0], got[0].json, score(time.Now())); err != nil {
		t.Fatal(err)
	}
	if !gone(t, live, r) {
		t.Fatal("a stale claim's completion brought the reminder back")
	}
}

// Rescheduling a reminder while it is being fired: the new schedule wins.
func TestRescheduleDuringFiring(t *testing.T) {
	b := backend(t)
	s, _ := newStore(t, b.RedisAddr(), Options{})
	entered := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	rec := &recorder{}
	stop := runScheduler(t, s, func(ctx context.Context, r Reminder) error {
		once.Do(func() {
			close(entered)
			<-release
		})
		return rec.fire(ctx, r)
	})
	r := Reminder{Actor: foo, ID: "moving", Path: "/old", TargetTime: time.Now(), Period: time.Hour}
	schedule(t, s, r)
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the reminder did not fire")
	}
	moved := Reminder{Actor: foo, ID: "moving", Path: "/new", TargetTime: time.Now().Add(24 * time.Hour)}
	schedule(t, s, moved)
	close(release)
	testenv.Eventually(t, 5*time.Second, func() bool { return rec.count("moving") == 1 }, "the firing completes")
	stop() // waits for the claim's completion

	got, err := s.Get(context.Background(), foo, "moving")
	if err != nil {
		t.Fatal(err)
	}
	if got.Path != "/new" || !got.TargetTime.Equal(moved.TargetTime) || got.Period != 0 {
		t.Fatalf("after firing: %+v, want %+v", got, moved)
	}
}

func TestLateFiringIsLogged(t *testing.T) {
	b := backend(t)
	s, logs := newStore(t, b.RedisAddr(), Options{LateAfter: 100 * time.Millisecond})
	rec := &recorder{}
	runScheduler(t, s, rec.fire)
	schedule(t, s, Reminder{Actor: foo, ID: "late", Path: "/l", TargetTime: time.Now().Add(-time.Second)})
	schedule(t, s, Reminder{Actor: foo, ID: "ontime", Path: "/o", TargetTime: time.Now().Add(20 * time.Millisecond)})
	testenv.Eventually(t, 5*time.Second, func() bool { return rec.count("late") == 1 && rec.count("ontime") == 1 }, "both fire")
	out := logs.String()
	if !strings.Contains(out, "firing late") || !strings.Contains(out, "reminder=late") {
		t.Fatalf("late firing not logged:\n%s", out)
	}
	if strings.Contains(out, "reminder=ontime") {
		t.Fatalf("on-time firing logged as late:\n%s", out)
	}
}

// Redis goes away across a reminder's target time while the scheduler runs:
// the scheduler reconnects and fires it once Redis is back.
func TestSchedulerSurvivesRedisOutage(t *testing.T) {
	b := backend(t, func(o *devenv.Options) { o.DataDir = t.TempDir() })
	s, _ := newStore(t, b.RedisAddr(), Options{})
	rec := &recorder{}
	runScheduler(t, s, rec.fire)

	r := Reminder{Actor: foo, ID: "outage", Path: "/o", TargetTime: time.Now().Add(150 * time.Millisecond)}
	schedule(t, s, r)
	if err := b.StopRedis(true); err != nil { // kill -9: appendfsync always keeps the reminder
		t.Fatal(err)
	}
	testenv.Eventually(t, 5*time.Second, func() bool {
		return time.Now().After(r.TargetTime.Add(200 * time.Millisecond))
	}, "the target time passes while Redis is down")
	if n := rec.count("outage"); n != 0 {
		t.Fatalf("fired %d times while Redis was down", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 15*time.Second, func() bool { return rec.count("outage") == 1 }, "the reminder fires once Redis is back")
	testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s, r) }, "and is removed")
}

// scriptCalls is how many scripts Redis has run so far.
func scriptCalls(t *testing.T, s *Store) int {
	info, err := s.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(info, "\n") {
		for _, cmd := range []string{"cmdstat_evalsha:calls=", "cmdstat_eval:calls="} {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), cmd); ok {
				var n int
				fmt.Sscanf(rest, "%d", &n)
				total += n
			}
		}
	}
	return total
}

// A sidecar whose clock is off (a laptop in a hybrid mesh) goes by Redis's
// clock: it neither fires early nor spins, nor fires late.
func TestSkewedLocalClock(t *testing.T) {
	for _, skew := range []time.Duration{10 * time.Second, -10 * time.Second} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			b := backend(t)
			s, _ := newStore(t, b.RedisAddr(), Options{})
			s.clock = func() time.Time { return time.Now().Add(skew) }
			rec := &recorder{}
			runScheduler(t, s, rec.fire)

			before := scriptCalls(t, s)
			r := Reminder{Actor: foo, ID: "skew", Path: "/s", TargetTime: time.Now().Add(300 * time.Millisecond)}
			schedule(t, s, r)
			testenv.Eventually(t, 5*time.Second, func() bool { return rec.count("skew") == 1 }, "the reminder fires")
			late := rec.snapshot()[0].at.Sub(r.TargetTime)
			if late < 0 || late > 250*time.Millisecond {
				t.Fatalf("fired %v after its target", late)
			}
			// A spinning scheduler would run thousands of claims in 300ms.
			if n := scriptCalls(t, s) - before; n > 50 {
				t.Fatalf("%d scripts run for one reminder", n)
			}
		})
	}
}

// A slow fire function: at most Concurrency firings at once, and every
// reminder still fires once.
func TestConcurrencyBound(t *testing.T) {
	b := backend(t)
	s, _ := newStore(t, b.RedisAddr(), Options{Concurrency: 2})
	var mu sync.Mutex
	inFlight, peak := 0, 0
	rec := &recorder{}
	runScheduler(t, s, func(ctx context.Context, r Reminder) error {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a slow actor call being accepted
		mu.Lock()
		inFlight--
		mu.Unlock()
		return rec.fire(ctx, r)
	})
	const n = 20
	for i := 0; i < n; i++ {
		schedule(t, s, Reminder{Actor: foo, ID: fmt.Sprint(i), Path: "/c", TargetTime: time.Now()})
	}
	testenv.Eventually(t, 10*time.Second, func() bool { return len(rec.snapshot()) >= n }, "all %d reminders fire", n)
	for i := 0; i < n; i++ {
		r := Reminder{Actor: foo, ID: fmt.Sprint(i)}
		testenv.Eventually(t, 5*time.Second, func() bool { return gone(t, s, r) }, "reminder %d removed", i)
		if c := rec.count(r.ID); c != 1 {
			t.Errorf("reminder %d fired %d times", i, c)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if peak > 2 {
		t.Fatalf("%d firings at once, want at most 2", peak)
	}
}
