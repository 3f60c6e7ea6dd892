// Package mesh_test runs real kar processes against a real redis-server and
// the Kafka-protocol broker, with components launched as users launch them.
package mesh_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/redis/go-redis/v9"
)

// repo is the repository root.
func repo(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func example(t *testing.T, name string) string { return filepath.Join(repo(t), "examples", name) }

// needNode skips nothing: CI has Node; it fails clearly when the example's
// npm packages are missing.
func needNodeExample(t *testing.T, name string) string {
	t.Helper()
	dir := example(t, name)
	if _, err := exec.LookPath("node"); err != nil {
		t.Fatalf("node is not on PATH: %v", err)
	}
	if _, err := exec.Command("test", "-d", filepath.Join(dir, "node_modules")).Output(); err != nil {
		t.Fatalf("run `npm install` in %s first (scripts/test.sh does)", dir)
	}
	return dir
}

// karEnv is the environment of a kar process on backend b, with a short
// lease so that fault tests recover quickly.
func karEnv(b *devenv.Backend, extra ...string) []string {
	return append(append(b.Env(), "KAR_LEASE_TTL=1s"), extra...)
}

// server starts `kar run -app app -service svc ... CMD` and waits until it serves.
func startService(t *testing.T, b *devenv.Backend, name, app, svc, dir string, cmd ...string) (*testenv.Proc, int) {
	t.Helper()
	port := testenv.FreePort(t)
	args := append([]string{testenv.KarBin(t), "run", "-app", app, "-service", svc, "-app_port", strconv.Itoa(port), "-v", "info"}, cmd...)
	p := testenv.Start(t, name, karEnv(b), dir, args...)
	waitServes(t, b, app, svc, 1)
	return p, port
}

// waitServes waits until at least n sidecars announce service svc.
func waitServes(t *testing.T, b *devenv.Backend, app, svc string, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() bool {
		return countService(t, b, app, svc) >= n
	}, "%d sidecar(s) of service %s in app %s", n, svc, app)
}

// rest runs `kar rest` and returns its stdout, stderr and exit code.
func rest(t *testing.T, b *devenv.Backend, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(testenv.KarBin(t), append([]string{"rest"}, args...)...)
	cmd.Env = append(cmd.Environ(), karEnv(b)...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("kar rest: %v", err)
	}
	return out.String(), errb.String(), code
}

// redisOf connects to the backend's Redis as the sidecars do; the client
// is closed when the test ends.
func redisOf(t *testing.T, b *devenv.Backend) redis.UniversalClient {
	t.Helper()
	rdb, err := store.Connect(context.Background(), backendConfig(b))
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// countService counts the live sidecars that announce svc, as Redis holds them.
func countService(t *testing.T, b *devenv.Backend, app, svc string) int {
	ctx := context.Background()
	rdb, err := store.Connect(ctx, backendConfig(b))
	if err != nil {
		t.Logf("redis: %v", err)
		return 0
	}
	defer rdb.Close()
	keys := store.NewKeys(app)
	ids, _ := rdb.SMembers(ctx, keys.Sidecars()).Result()
	n := 0
	for _, id := range ids {
		s, err := rdb.Get(ctx, keys.Sidecar(id)).Result()
		if err != nil {
			continue
		}
		var m struct{ Services []string }
		if json.Unmarshal([]byte(s), &m) == nil && slices.Contains(m.Services, svc) {
			n++
		}
	}
	return n
}

// backendConfig is b's settings as kar reads them from b.Env().
func backendConfig(b *devenv.Backend) config.Backend {
	var cfg config.Backend
	cfg.RedisHost, cfg.RedisPort = b.RedisHost(), b.RedisPort()
	for _, kv := range b.Env() {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "REDIS_ENABLE_TLS":
			cfg.RedisEnableTLS = v == "true"
		case "REDIS_CA":
			cfg.RedisCA = v
		case "REDIS_USER":
			cfg.RedisUser = v
		case "REDIS_PASSWORD":
			cfg.RedisPassword = v
		}
	}
	return cfg
}

// waitCommitted waits until every record of app's topic is committed by
// the sidecar reading it. A sidecar commits shortly after it finishes a
// record, and its partition's next owner delivers again what it had not
// committed when it died (at least once): a test that kills a sidecar and
// wants no redelivery of what was already answered waits for this first.
func waitCommitted(t *testing.T, b *devenv.Backend, app string) {
	t.Helper()
	ctx := context.Background()
	rdb, err := store.Connect(ctx, backendConfig(b))
	if err != nil {
		t.Fatalf("redis: %v", err)
	}
	defer rdb.Close()
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	kc, err := sarama.NewClient([]string{b.KafkaBrokers()}, cfg)
	if err != nil {
		t.Fatalf("kafka: %v", err)
	}
	defer kc.Close()
	keys, topic := store.NewKeys(app), kafka.Topic(app)
	testenv.Eventually(t, 10*time.Second, func() bool {
		parts, err := kc.Partitions(topic)
		if err != nil {
			return false
		}
		for _, p := range parts {
			hwm, err := kc.GetOffset(topic, p, sarama.OffsetNewest)
			if err != nil {
				return false
			}
			if hwm == 0 {
				continue
			}
			committed, err := rdb.Get(ctx, keys.Offset(p)).Int64()
			if err != nil || committed < hwm {
				return false
			}
		}
		return true
	}, "every record of %s committed", topic)
}
