// Package examples_test runs the example applications of examples/ as their
// READMEs say, with real kar processes on a real redis-server and the
// Kafka-protocol broker, and checks that they do what they promise.
package examples_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// example is the directory of examples/name.
func example(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", name)
}

// nodeExample is the directory of a Node example whose npm packages are
// installed (scripts/test.sh runs npm install in every example).
func nodeExample(t *testing.T, name string) string {
	t.Helper()
	dir := example(name)
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "kar-sdk")); err != nil {
		t.Fatalf("run `npm install` in %s first (scripts/test.sh does): %v", dir, err)
	}
	return dir
}

// karEnv is the environment of a kar process on backend b, with a short
// lease so that a killed sidecar's work moves on quickly.
func karEnv(b *devenv.Backend, extra ...string) []string {
	return append(append(b.Env(), "KAR_LEASE_TTL=1s"), extra...)
}

// karRun starts `kar run ARGS...` in dir as the README says, adding only a
// free -app_port so that tests never share a fixed port.
func karRun(t *testing.T, b *devenv.Backend, name, dir string, env []string, args ...string) *testenv.Proc {
	t.Helper()
	full := []string{testenv.KarBin(t), "run", "-app_port", strconv.Itoa(testenv.FreePort(t))}
	// EXAMPLES_KAR_VERBOSE=info (or debug) shows the sidecars' logs when a
	// test needs looking into.
	if v := os.Getenv("EXAMPLES_KAR_VERBOSE"); v != "" {
		full = append(full, "-v", v)
	}
	full = append(full, args...)
	return testenv.Start(t, name, append(karEnv(b), env...), dir, full...)
}

// dumpOnFailure logs every Redis key of app when the test fails: actor
// state, placement, reminders and subscriptions are what to look at when
// an example stalls.
func dumpOnFailure(t *testing.T, b *devenv.Backend, app string) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		rdb := redis.NewClient(&redis.Options{Addr: b.RedisAddr()})
		defer rdb.Close()
		keys, err := rdb.Keys(ctx, store.NewKeys(app).Pattern()).Result()
		if err != nil {
			t.Logf("redis dump: %v", err)
			return
		}
		sort.Strings(keys)
		for _, k := range keys {
			var v any
			switch typ, _ := rdb.Type(ctx, k).Result(); typ {
			case "string":
				v, err = rdb.Get(ctx, k).Result()
			case "hash":
				v, err = rdb.HGetAll(ctx, k).Result()
			case "zset":
				v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
			case "set":
				v, err = rdb.SMembers(ctx, k).Result()
			default:
				v = typ
			}
			t.Logf("redis %s = %v %v", k, v, err)
		}
	})
}
