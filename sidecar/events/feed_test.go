package events

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/internal/testenv"
)

// perActor routes each delivery to a recorder of its own actor id.
type perActor struct {
	mu   sync.Mutex
	recs map[string]*recorder
	// gate, when set for an id, holds its deliveries until closed.
	gate map[string]chan struct{}
}

func (b *perActor) rec(id string) *recorder {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.recs == nil {
		b.recs = map[string]*recorder{}
	}
	if b.recs[id] == nil {
		b.recs[id] = &recorder{}
	}
	return b.recs[id]
}

func (b *perActor) deliverAs(by string) DeliverFunc {
	return func(ctx context.Context, typ, id, path, ct string, body []byte) error {
		b.mu.Lock()
		g := b.gate[id]
		b.mu.Unlock()
		if g != nil {
			select {
			case <-g:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return b.rec(id).deliverAs(by)(ctx, typ, id, path, ct, body)
	}
}

// commandCounter counts the Redis commands a client sends, by name.
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (c *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add(cmd)
		return next(ctx, cmd)
	}
}
func (c *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		for _, cmd := range cmds {
			c.add(cmd)
		}
		return next(ctx, cmds)
	}
}
func (c *commandCounter) add(cmd redis.Cmder) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n != nil {
		c.n[strings.ToLower(cmd.Name())]++
	}
}

// count counts the commands sent while f runs.
func (c *commandCounter) count(f func()) map[string]int {
	c.mu.Lock()
	c.n = map[string]int{}
	c.mu.Unlock()
	f()
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = nil
	return n
}

// TestIdleSubscriptionsShareAReader: many subscriptions of one topic on one
// sidecar read it through one partition reader (one connection, one parked
// fetch), and while idle their leases are renewed in batches and the
// subscriptions are not read again every poll. Before feeds, each had a
// reader and a lease renewal of its own, and every poll read them all.
func TestIdleSubscriptionsShareAReader(t *testing.T) {
	w := newWorld(t)
	counter := &commandCounter{}
	w.rdb.AddHook(counter)
	const subs = 40
	actors := &perActor{}
	s, _ := w.service(t, "sc1", actors.deliverAs("sc1"))
	base := serve(t, s).URL
	for i := range subs {
		subscribe(t, base, fmt.Sprintf("a%d", i), fmt.Sprintf("s%d", i), `{"path":"/m","topic":"many","contentType":"application/json"}`)
	}
	run(t, s)
	all := func(n int) bool {
		for i := range subs {
			if actors.rec(fmt.Sprintf("a%d", i)).count() < n {
				return false
			}
		}
		return true
	}
	// Every subscription has its position once the first event reaches
	// all of them.
	publishN(t, base, "many", 0, 1)
	testenv.Eventually(t, 30*time.Second, func() bool { return all(1) }, "the first event delivered to every subscription")
	testenv.Eventually(t, 10*time.Second, func() bool { return readerGoroutines() == 1 }, "one reader for %d subscriptions (%d readers)", subs, readerGoroutines())

	// Idle: 2 s is 20 polls and 4 lease renewals of each group with the
	// test's timings (Poll 100 ms, LeaseTTL 1.5 s).
	window := 2 * time.Second
	polls := int(window / s.opts.Poll)
	n := counter.count(func() { time.Sleep(window) })
	scripts := n["evalsha"] + n["eval"]
	t.Logf("idle %v with %d subscriptions: %v", window, subs, n)
	// A heartbeat a poll and a few batched renewals; each group renewing
	// its own lease would be 4 x 40 = 160 more.
	if scripts > polls+20 {
		t.Errorf("%d scripts run in %v of idle with %d subscriptions, want at most %d", scripts, window, subs, polls+20)
	}
	if n["hgetall"] > polls/4 {
		t.Errorf("the subscriptions read %d times in %d polls", n["hgetall"], polls)
	}

	publishN(t, base, "many", 1, 5)
	testenv.Eventually(t, 30*time.Second, func() bool { return all(5) }, "4 more events delivered to every subscription")
	for i := range subs {
		if nums := numbers(t, actors.rec(fmt.Sprintf("a%d", i)).snapshot()); !slices.Equal(nums, seq(0, 5)) {
			t.Errorf("subscription %d: delivered %v, want 0..4", i, nums)
		}
	}
}

// TestSlowSubscriptionReadsAlone: a subscriber that does not take its
// events does not hold back the others sharing its reader; it reads on
// its own meanwhile, gets every event once and in order when it goes on,
// and joins the shared reader again once caught up.
func TestSlowSubscriptionReadsAlone(t *testing.T) {
	w := newWorld(t)
	gate := make(chan struct{})
	actors := &perActor{gate: map[string]chan struct{}{"slow": gate}}
	var released atomic.Bool
	t.Cleanup(func() {
		if !released.Load() {
			close(gate)
		}
	})
	s, logs := w.service(t, "sc1", actors.deliverAs("sc1"))
	base := serve(t, s).URL
	subscribe(t, base, "fast", "f", `{"path":"/m","topic":"lag","contentType":"application/json"}`)
	subscribe(t, base, "slow", "s", `{"path":"/m","topic":"lag","contentType":"application/json"}`)
	run(t, s)
	publishN(t, base, "lag", 0, 1)
	fast, slow := actors.rec("fast"), actors.rec("slow")
	testenv.Eventually(t, 30*time.Second, func() bool { return fast.count() == 1 }, "the first event delivered")

	const n = 4 * tapBuffer
	publishN(t, base, "lag", 1, n)
	testenv.Eventually(t, 30*time.Second, func() bool { return fast.count() == n }, "the fast subscription gets %d events while the slow one holds its first (fast %d)\n%s", n, fast.count(), logs)
	if c := slow.count(); c != 0 {
		t.Fatalf("the gated subscription got %d events", c)
	}
	// A reader that was closed (a subscription that started behind the
	// other and caught up) ends when its parked fetch returns.
	testenv.Eventually(t, 10*time.Second, func() bool { return readerGoroutines() == 2 },
		"2 partition readers while one subscription lags: the shared one and its own (%d)", readerGoroutines())

	released.Store(true)
	close(gate)
	testenv.Eventually(t, 30*time.Second, func() bool { return slow.count() >= n }, "the slow subscription catches up")
	testenv.Eventually(t, 10*time.Second, func() bool { return readerGoroutines() == 1 }, "the slow subscription joins the shared reader again (%d readers)", readerGoroutines())
	publishN(t, base, "lag", n, n+5)
	testenv.Eventually(t, 30*time.Second, func() bool { return fast.count() >= n+5 && slow.count() >= n+5 }, "both get the next events")
	for name, r := range map[string]*recorder{"fast": fast, "slow": slow} {
		if nums := numbers(t, r.snapshot()); !slices.Equal(nums, seq(0, n+5)) {
			t.Errorf("%s: delivered %v, want 0..%d once each in order", name, nums, n+4)
		}
	}
}
