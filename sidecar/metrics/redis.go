package metrics

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisHook times every Redis request (KAR's
// kar_redis_request_durations_histogram_seconds: a command, or a pipeline
// as one round trip) and counts the connections opened again after one
// failed (kar_backend_reconnects_total{backend="redis"}).
func (m *Metrics) RedisHook() redis.Hook { return &redisHook{m: m} }

type redisHook struct {
	m *Metrics
	// broken: a connection failed since the last dial that worked.
	broken atomic.Bool
}

func (h *redisHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err != nil {
			h.broken.Store(true)
		} else if h.broken.Swap(false) {
			h.m.Reconnect("redis")
		}
		return c, err
	}
}

func (h *redisHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.m.Redis(time.Since(start))
		h.failed(err)
		return err
	}
}

func (h *redisHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.m.Redis(time.Since(start))
		h.failed(err)
		return err
	}
}

// failed notes a request that failed on its connection: the next dial
// that works is a reconnect.
func (h *redisHook) failed(err error) {
	var ne net.Error
	if err != nil && (errors.As(err, &ne) || errors.Is(err, net.ErrClosed)) {
		h.broken.Store(true)
	}
}
