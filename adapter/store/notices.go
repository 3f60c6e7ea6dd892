package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kar-runtime/kar/internal/wait"
	"github.com/redis/go-redis/v9"
)

// Notices carries a sidecar's Redis pub/sub channels (membership, reminder
// and subscription wake-ups) on one connection.
//
// go-redis gives every PubSub a connection of its own with 32 KiB read and
// write buffers, whatever the client's buffer sizes: a sidecar subscribing
// once per mechanism held three connections to Redis for its notices and
// 192 KB of buffers, a tenth of a loaded sidecar's live heap. A PubSub
// takes more channels on the connection it has, and tells each message's
// channel, so one serves them all.
//
// Each Watch gets the messages of its channel, and a *redis.Subscription
// each time the channel is subscribed again after a lost connection
// (notices sent meanwhile were lost: read the state again). A watcher that
// falls behind is never waited for, so that it cannot hold up the others:
// what does not fit its buffer is dropped, and it is told with a
// *redis.Subscription as soon as there is room, as after a lost connection.
type Notices struct {
	ps *redis.PubSub

	mu       sync.Mutex
	watchers map[string][]*watcher
	reading  bool // run has started
	closed   bool
}

type watcher struct {
	c    chan any
	lost bool // a message was dropped: owe a *redis.Subscription (under Notices.mu)
}

// watchBuffer is each watcher's room for messages not yet read.
const watchBuffer = 64

// NewNotices returns a Notices on rdb's pub/sub; it connects at the first
// Watch.
func NewNotices(rdb redis.UniversalClient) *Notices {
	return &Notices{ps: rdb.Subscribe(context.Background()), watchers: map[string][]*watcher{}}
}

// Watch subscribes to channel, waits until Redis has confirmed it (no
// message published after Watch returns is missed while the connection
// holds), and returns the channel's messages and re-subscriptions; stop
// ends the watch.
func (n *Notices) Watch(ctx context.Context, channel string) (notices <-chan any, stop func(), err error) {
	w := &watcher{c: make(chan any, watchBuffer)}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, nil, errors.New("notices closed")
	}
	n.watchers[channel] = append(n.watchers[channel], w)
	n.mu.Unlock()
	stop = func() { n.unwatch(channel, w) }
	if err := n.ps.Subscribe(ctx, channel); err != nil {
		stop()
		return nil, nil, fmt.Errorf("subscribe to %s: %w", channel, err)
	}
	n.mu.Lock()
	if !n.reading {
		// Started after the first SUBSCRIBE, so that its first health
		// check pings a connection in subscribed mode.
		n.reading = true
		go n.run(n.ps.ChannelWithSubscriptions(redis.WithChannelHealthCheckInterval(PubSubCheck)))
	}
	n.mu.Unlock()
	// The confirmation comes to every watcher of the channel; this one
	// takes it, as its subscription's.
	for {
		select {
		case v := <-w.c:
			if _, ok := v.(*redis.Subscription); ok {
				return w.c, stop, nil
			}
		case <-ctx.Done():
			stop()
			return nil, nil, fmt.Errorf("subscribe to %s: %w", channel, ctx.Err())
		}
	}
}

func (n *Notices) unwatch(channel string, w *watcher) {
	n.mu.Lock()
	defer n.mu.Unlock()
	ws := n.watchers[channel]
	for i, x := range ws {
		if x == w {
			n.watchers[channel] = append(ws[:i:i], ws[i+1:]...)
			break
		}
	}
}

// run hands what the connection reads to the watchers of its channel, until
// the PubSub is closed.
func (n *Notices) run(in <-chan any) {
	for v := range in {
		var channel string
		switch m := v.(type) {
		case *redis.Message:
			channel = m.Channel
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				continue
			}
			channel = m.Channel
		default:
			continue
		}
		n.mu.Lock()
		for _, w := range n.watchers[channel] {
			w.send(channel, v)
		}
		n.mu.Unlock()
	}
}

// send passes v on without waiting, after the re-read it owes.
func (w *watcher) send(channel string, v any) {
	if w.lost {
		select {
		case w.c <- &redis.Subscription{Kind: "subscribe", Channel: channel}:
			w.lost = false
		default:
			return
		}
	}
	select {
	case w.c <- v:
	default:
		w.lost = true
	}
}

// Watch watches channel on notices, or, when notices is nil, on Notices of
// its own on rdb, which stop closes. It tries again, a little later each
// time, until Redis confirms the subscription or ctx ends.
func Watch(ctx context.Context, notices *Notices, rdb redis.UniversalClient, channel string) (<-chan any, func(), error) {
	own := notices == nil
	if own {
		notices = NewNotices(rdb)
	}
	backoff := 50 * time.Millisecond
	for {
		ch, stop, err := notices.Watch(ctx, channel)
		if err == nil {
			if own {
				return ch, func() { stop(); notices.Close() }, nil
			}
			return ch, stop, nil
		}
		if !wait.Sleep(ctx, backoff) {
			if own {
				notices.Close()
			}
			return nil, nil, err
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// Close closes the connection; the watchers' channels stay open, and no
// more comes on them.
func (n *Notices) Close() error {
	n.mu.Lock()
	n.closed = true
	n.mu.Unlock()
	return n.ps.Close()
}
