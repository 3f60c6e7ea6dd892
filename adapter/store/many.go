package store

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// Commands over many keys that may live in different slots: on a Redis
// Cluster a multi-key command (MGET, DEL k1 k2) whose keys hash to
// different slots fails with CROSSSLOT, and SCAN sees one node's keys.
// These work on a single Redis and on a cluster alike.

// ScanKeys returns the keys matching pattern: on a cluster, those of every
// primary (ClusterClient.ForEachMaster), else those of the one Redis.
func ScanKeys(ctx context.Context, rdb redis.UniversalClient, pattern string) ([]string, error) {
	var (
		mu  sync.Mutex
		out []string
	)
	scan := func(ctx context.Context, c redis.Cmdable) error {
		iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if err := iter.Err(); err != nil {
			return err
		}
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return nil
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("scan keys %s: %w", pattern, err)
	}
	return out, nil
}

// GetMany returns the values of the string keys (nil for a missing key),
// in one round trip per node: on a cluster a pipeline of GETs, on one
// Redis one MGET. Every sidecar reads every partition's lease and
// position each second with it: as GETs, that made an idle mesh of 50
// members cost a single Redis 64 commands per member and second instead
// of 1 (bench/scale).
func GetMany(ctx context.Context, rdb redis.UniversalClient, keys []string) ([]any, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	if _, cluster := rdb.(*redis.ClusterClient); !cluster {
		return rdb.MGet(ctx, keys...).Result()
	}
	cmds := make([]*redis.StringCmd, len(keys))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]any, len(keys))
	for i, c := range cmds {
		if v, err := c.Result(); err == nil {
			out[i] = v
		} else if !errors.Is(err, redis.Nil) {
			return nil, err
		}
	}
	return out, nil
}

// UnlinkMany removes keys (in the background of Redis, as UNLINK does)
// and returns how many existed.
func UnlinkMany(ctx context.Context, rdb redis.UniversalClient, keys []string) (int64, error) {
	var n int64
	for len(keys) > 0 {
		batch := keys[:min(len(keys), 1000)]
		keys = keys[len(batch):]
		cmds := make([]*redis.IntCmd, len(batch))
		if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, k := range batch {
				cmds[i] = p.Unlink(ctx, k)
			}
			return nil
		}); err != nil {
			return n, err
		}
		for _, c := range cmds {
			n += c.Val()
		}
	}
	return n, nil
}
