package store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// next is the next notice on ch, or a test failure after a deadline.
func next(t *testing.T, ch <-chan any) any {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("no notice within 10s")
		return nil
	}
}

func wantMessage(t *testing.T, ch <-chan any, channel, payload string) {
	t.Helper()
	v := next(t, ch)
	m, ok := v.(*redis.Message)
	if !ok || m.Channel != channel || m.Payload != payload {
		t.Fatalf("got %#v, want message %q on %s", v, payload, channel)
	}
}

func wantResubscribed(t *testing.T, ch <-chan any, channel string) {
	t.Helper()
	v := next(t, ch)
	if s, ok := v.(*redis.Subscription); !ok || s.Channel != channel {
		t.Fatalf("got %#v, want a re-subscription to %s", v, channel)
	}
}

// newNotices is a Notices on a fresh Redis, with a client of that Redis;
// both are closed when the test ends.
func newNotices(t *testing.T) (*redis.Client, *store.Notices) {
	t.Helper()
	b := testenv.Backend(t)
	rdb := redis.NewClient(&redis.Options{Addr: b.RedisAddr(), Protocol: 2})
	n := store.NewNotices(rdb)
	t.Cleanup(func() { n.Close(); rdb.Close() })
	return rdb, n
}

// watch watches channel on n until the test ends.
func watch(t *testing.T, n *store.Notices, channel string) <-chan any {
	t.Helper()
	ch, stop, err := n.Watch(context.Background(), channel)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return ch
}

// pubsubConns counts the connections Redis has in subscribed mode.
func pubsubConns(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	list, err := rdb.ClientList(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(list, "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "sub=") && f != "sub=0" {
				n++
			}
		}
	}
	return n
}

// TestNoticesOneConnection: the channels of every watcher share one
// connection, and each watcher hears its own channel only, from the moment
// Watch returns.
func TestNoticesOneConnection(t *testing.T) {
	ctx := context.Background()
	rdb, n := newNotices(t)
	chans := []string{"kar:test:members", "kar:test:reminders", "kar:test:subscriptions"}
	var watches []<-chan any
	for _, c := range chans {
		watches = append(watches, watch(t, n, c))
	}
	if got := pubsubConns(t, rdb); got != 1 {
		t.Errorf("%d connections in subscribed mode, want 1", got)
	}
	for i, c := range chans {
		if err := rdb.Publish(ctx, c, fmt.Sprint("notice ", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range chans {
		wantMessage(t, watches[i], c, fmt.Sprint("notice ", i))
		select {
		case v := <-watches[i]:
			t.Errorf("watcher of %s also got %#v", c, v)
		default:
		}
	}
}

// TestNoticesResubscribe: when the connection is cut, every watcher is
// told its channel was subscribed again (what was published meanwhile is
// lost), and hears what comes after.
func TestNoticesResubscribe(t *testing.T) {
	ctx := context.Background()
	rdb, n := newNotices(t)
	a, c := watch(t, n, "kar:test:a"), watch(t, n, "kar:test:c")
	if err := rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	wantResubscribed(t, a, "kar:test:a")
	wantResubscribed(t, c, "kar:test:c")
	if err := rdb.Publish(ctx, "kar:test:c", "after").Err(); err != nil {
		t.Fatal(err)
	}
	wantMessage(t, c, "kar:test:c", "after")
}

// TestNoticesSlowWatcher: a watcher that does not read holds up nobody;
// what it missed, it is told as a re-subscription once it reads again.
func TestNoticesSlowWatcher(t *testing.T) {
	ctx := context.Background()
	rdb, n := newNotices(t)
	slow, fast := watch(t, n, "kar:test:slow"), watch(t, n, "kar:test:fast")
	const published = 200 // more than a watcher's buffer
	for i := range published {
		if err := rdb.Publish(ctx, "kar:test:slow", fmt.Sprint(i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.Publish(ctx, "kar:test:fast", "on time").Err(); err != nil {
		t.Fatal(err)
	}
	wantMessage(t, fast, "kar:test:fast", "on time")
	// The slow watcher has the first of its messages, in order, and then
	// nothing until more comes.
	kept := 0
	for len(slow) > 0 {
		wantMessage(t, slow, "kar:test:slow", fmt.Sprint(kept))
		kept++
	}
	if kept == 0 || kept >= published {
		t.Fatalf("the slow watcher kept %d of %d messages", kept, published)
	}
	if err := rdb.Publish(ctx, "kar:test:slow", "later").Err(); err != nil {
		t.Fatal(err)
	}
	wantResubscribed(t, slow, "kar:test:slow")
	wantMessage(t, slow, "kar:test:slow", "later")
}

// TestWatchRedisDown: Watch keeps trying while Redis does not answer, and
// says why when its context ends.
func TestWatchRedisDown(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Protocol: 2, DialTimeout: 100 * time.Millisecond})
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, _, err := store.Watch(ctx, nil, rdb, "kar:test:down")
	if err == nil || !strings.Contains(err.Error(), "kar:test:down") {
		t.Fatalf("Watch with Redis down: %v, want an error naming the channel", err)
	}
}
