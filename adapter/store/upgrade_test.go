package store

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// An application's keys in kar's previous layout (every key under {app})
// are moved to the present scheme once, with their values and TTLs; keys
// of the application's own tag and other applications' keys stay; a
// second start reads one marker.
func TestEnsureLayoutMovesThePreviousLayout(t *testing.T) {
	mr, rdb := miniClient(t)
	ctx := context.Background()
	k := NewKeys("A")

	mr.HSet("kar:{A}:state:T:1", "count", "5")
	mr.HSet("kar:{A}:state:T:a%3Ab", "x", "1")
	mr.HSet("kar:{A}:submap:T:a%3Ab:m%25", "s", "2")
	mr.SAdd("kar:{A}:submaps:T:a%3Ab", "m%")
	mr.Set("kar:{A}:placement:T:1", "sidecar-old")
	mr.HSet("kar:{A}:reminders", "T/1/r1", `{"id":"r1"}`)
	mr.HSet("kar:{A}:reminders", "T/a:b/r2", `{"id":"r2"}`)
	mr.ZAdd("kar:{A}:reminder-schedule", 1, "T/1/r1")
	mr.Set("kar:{A}:offset:3", "42")
	mr.Set("kar:{A}:lease:3", "sidecar-old")
	mr.HSet("kar:{A}:calls:req-1", "req-2", "1")
	mr.SetTTL("kar:{A}:calls:req-1", time.Hour)
	mr.Set("kar:{A}:response:req-1", "rec")
	mr.SetTTL("kar:{A}:response:req-1", time.Hour)
	mr.SAdd("kar:{A}:sidecars", "s1")
	mr.HSet("kar:{B}:state:T:1", "count", "7")

	moved, err := EnsureLayout(ctx, rdb, k)
	if err != nil {
		t.Fatal(err)
	}
	if moved != 10 {
		t.Errorf("moved %d keys and reminders, want 10 (8 keys, 2 reminders)", moved)
	}
	for _, c := range []struct {
		key, field, want string
	}{
		{k.ActorState("T", "1"), "count", "5"},
		{k.ActorState("T", "a:b"), "x", "1"},
		{k.ActorSubmap("T", "a:b", "m%"), "s", "2"},
		{k.Reminders("T", "1"), "T/1/r1", `{"id":"r1"}`},
		{k.Reminders("T", "a:b"), "T/a:b/r2", `{"id":"r2"}`},
		{k.Calls("req-1"), "req-2", "1"},
		{"kar:{B}:state:T:1", "count", "7"},
	} {
		if got := mr.HGet(c.key, c.field); got != c.want {
			t.Errorf("%s %s = %q, want %q", c.key, c.field, got, c.want)
		}
	}
	for key, want := range map[string]string{k.Offset(3): "42", k.Placement("T", "1"): "sidecar-old", k.Response("req-1"): "rec"} {
		if got, _ := mr.Get(key); got != want {
			t.Errorf("%s = %q, want %q", key, got, want)
		}
	}
	if ok, _ := mr.SIsMember(k.ActorSubmaps("T", "a:b"), "m%"); !ok {
		t.Errorf("sub-map set not moved")
	}
	if ttl := mr.TTL(k.Calls("req-1")); ttl <= 0 || ttl > time.Hour {
		t.Errorf("TTL of the moved calls = %v, want up to an hour", ttl)
	}
	if ok, _ := mr.SIsMember(k.Sidecars(), "s1"); !ok {
		t.Errorf("the members set of the application's own tag went")
	}
	if s, _ := mr.ZScore(k.ReminderSchedule(), "T/1/r1"); s != 1 {
		t.Errorf("the reminder schedule changed: %v", s)
	}
	for _, old := range []string{"kar:{A}:state:T:1", "kar:{A}:reminders", "kar:{A}:offset:3", "kar:{A}:lease:3", "kar:{A}:submap:T:a%3Ab:m%25"} {
		if mr.Exists(old) {
			t.Errorf("%s is still there", old)
		}
	}

	// Once moved, a start reads the marker only.
	mr.HSet("kar:{A}:state:T:late", "n", "1")
	if moved, err := EnsureLayout(ctx, rdb, k); err != nil || moved != 0 || !mr.Exists("kar:{A}:state:T:late") {
		t.Errorf("second EnsureLayout: moved %d, %v", moved, err)
	}
}

// Sidecars starting together: one moves the keys, the others wait for it.
func TestEnsureLayoutConcurrent(t *testing.T) {
	mr := miniredis.RunT(t)
	ctx := context.Background()
	for i := range 200 {
		mr.HSet("kar:{A}:state:T:"+string(rune('a'+i%26))+string(rune('a'+i/26)), "n", "1")
	}
	var wg sync.WaitGroup
	total := make([]int, 4)
	for i := range total {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
			defer rdb.Close()
			n, err := EnsureLayout(ctx, rdb, NewKeys("A"))
			if err != nil {
				t.Error(err)
			}
			total[i] = n
		}()
	}
	wg.Wait()
	if sum := total[0] + total[1] + total[2] + total[3]; sum != 200 {
		t.Errorf("moved %v keys in all, want 200 once", total)
	}
	if keys := mr.DB(0).Keys(); len(keys) != 200+1 {
		t.Errorf("%d keys after the move, want 200 and the marker", len(keys))
	}
}

// A sidecar of the previous kar still registered holds the move back: one
// whose registration expires within a lease is waited out, one that keeps
// renewing it (here: a registration without expiry) is an error naming it,
// and nothing moves.
func TestEnsureLayoutWaitsForPreviousSidecars(t *testing.T) {
	mr, rdb := miniClient(t)
	ctx := context.Background()
	k := NewKeys("A")
	mr.HSet("kar:{A}:state:T:1", "count", "5")
	mr.SAdd(k.Sidecars(), "old1", "gone")
	mr.Set(k.Sidecar("old1"), "{}")

	if _, err := EnsureLayout(ctx, rdb, k); err == nil || !strings.Contains(err.Error(), "old1") || !strings.Contains(err.Error(), "stop them") {
		t.Fatalf("EnsureLayout with a previous sidecar running: %v", err)
	}
	if !mr.Exists("kar:{A}:state:T:1") || mr.Exists(k.ActorState("T", "1")) || mr.Exists("kar:{A}:layout") {
		t.Fatal("keys moved while a previous sidecar ran")
	}

	// Its registration expires (it was killed): the move goes on.
	if err := rdb.PExpire(ctx, k.Sidecar("old1"), 300*time.Millisecond).Err(); err != nil {
		t.Fatal(err)
	}
	go func() {
		// miniredis expires keys when told the time has passed.
		time.Sleep(200 * time.Millisecond)
		mr.FastForward(time.Second)
	}()
	if moved, err := EnsureLayout(ctx, rdb, k); err != nil || moved != 1 || mr.HGet(k.ActorState("T", "1"), "count") != "5" {
		t.Fatalf("EnsureLayout once the registration expired: moved %d, %v", moved, err)
	}
}

// miniClient serves an embedded Redis-protocol server (kar dev's) and a
// client of it for the test.
func miniClient(t *testing.T) (*miniredis.Miniredis, *redis.Client) {
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	return mr, rdb
}
