package actorstate

import (
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/internal/testenv"
)

// startRedis serves a private redis-server on a free port for the test.
func startRedis(t testing.TB) string {
	t.Helper()
	return testenv.Backend(t).RedisAddr()
}

func newClient(t testing.TB, addr string) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
}
