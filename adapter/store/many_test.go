package store_test

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// TestGetManyOneRedis: on a single Redis, GetMany is one MGET whatever the
// number of keys (a sidecar reads every partition's lease and position
// with it every second), and answers nil for missing keys.
func TestGetManyOneRedis(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	rdb := redis.NewClient(&redis.Options{Addr: b.RedisAddr(), Protocol: 2})
	defer rdb.Close()
	keys := store.NewKeys("many")
	names := []string{keys.Lease(0), keys.Offset(0), keys.Lease(1), keys.Offset(1)}
	if err := rdb.Set(ctx, names[0], "me", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Set(ctx, names[3], "42", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := commandCalls(t, rdb)
	vals, err := store.GetMany(ctx, rdb, names)
	if err != nil {
		t.Fatal(err)
	}
	after := commandCalls(t, rdb)
	if vals[0] != "me" || vals[1] != nil || vals[2] != nil || vals[3] != "42" {
		t.Errorf("GetMany = %v, want [me <nil> <nil> 42]", vals)
	}
	if d := after["mget"] - before["mget"]; d != 1 {
		t.Errorf("%d MGET commands, want 1", d)
	}
	if d := after["get"] - before["get"]; d != 0 {
		t.Errorf("%d GET commands, want none", d)
	}
}

// commandCalls reads INFO commandstats: calls by command name.
func commandCalls(t *testing.T, rdb *redis.Client) map[string]int64 {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, line := range strings.Split(info, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_")
		if !ok {
			continue
		}
		name, stats, _ := strings.Cut(rest, ":")
		for _, kv := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(kv, "calls="); ok {
				out[name], _ = strconv.ParseInt(v, 10, 64)
			}
		}
	}
	return out
}
