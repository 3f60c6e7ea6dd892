package devenv

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func needRedisServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Fatalf("redis-server is not on PATH; install it (apt-get install redis-server): %v", err)
	}
}

func startBackend(t *testing.T, opts Options) *Backend {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return b
}

func redisClient(t *testing.T, b *Backend, user, pass string, tlsCerts *Certs) *redis.Client {
	t.Helper()
	o := &redis.Options{Addr: b.RedisAddr(), Username: user, Password: pass, MaxRetries: -1, DialTimeout: 2 * time.Second}
	if tlsCerts != nil {
		o.TLSConfig = tlsCerts.ClientConfig()
	}
	c := redis.NewClient(o)
	t.Cleanup(func() { c.Close() })
	return c
}

func envMap(env []string) map[string]string {
	m := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

func TestRedisModes(t *testing.T) {
	needRedisServer(t)
	for _, tc := range []struct {
		mode     RedisMode
		describe string
	}{
		{RedisServer, "redis-server"},
		{RedisEmbedded, "embedded"},
		{RedisAuto, "redis-server"},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			b := startBackend(t, Options{Redis: tc.mode})
			if d := b.RedisDescription(); !strings.Contains(d, tc.describe) {
				t.Errorf("RedisDescription() = %q, want it to mention %q", d, tc.describe)
			}
			ctx := context.Background()
			c := redisClient(t, b, "", "", nil)
			if err := c.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
				t.Fatalf("GET = %q, %v; want v", got, err)
			}
			// TTLs must run out by the clock in both servers: the mesh's leases depend on it.
			if err := c.Set(ctx, "lease", "x", 50*time.Millisecond).Err(); err != nil {
				t.Fatalf("SET with TTL: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for c.Exists(ctx, "lease").Val() == 1 {
				if time.Now().After(deadline) {
					t.Fatal("a key with a 50ms TTL still exists after 5s")
				}
				time.Sleep(10 * time.Millisecond)
			}
			env := envMap(b.Env())
			if env["REDIS_HOST"] != "127.0.0.1" || env["REDIS_PORT"] != strconv.Itoa(b.RedisPort()) || env["KAFKA_BROKERS"] != b.KafkaAddr() {
				t.Errorf("Env() = %v; want REDIS_HOST=127.0.0.1 REDIS_PORT=%d KAFKA_BROKERS=%s", b.Env(), b.RedisPort(), b.KafkaAddr())
			}
			for _, k := range []string{"REDIS_PASSWORD", "REDIS_ENABLE_TLS", "KAFKA_PASSWORD"} {
				if _, ok := env[k]; ok {
					t.Errorf("Env() has %s without TLS or passwords", k)
				}
			}
		})
	}
}

func TestParseRedisMode(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    RedisMode
		wantErr bool
	}{
		{"", RedisAuto, false},
		{"auto", RedisAuto, false},
		{"server", RedisServer, false},
		{"embedded", RedisEmbedded, false},
		{"docker", "", true},
	} {
		got, err := ParseRedisMode(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseRedisMode(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

// A redis-server killed with -9 comes back on the same port with every
// acknowledged write, as the mesh's fault tests need.
func TestRedisServerKillRestartKeepsData(t *testing.T) {
	needRedisServer(t)
	b := startBackend(t, Options{Redis: RedisServer, DataDir: t.TempDir()})
	ctx := context.Background()
	c := redisClient(t, b, "", "", nil)
	if err := c.Set(ctx, "survivor", "yes", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	rp := b.redis.(*redisProcess)
	pid, port := rp.pid(), b.RedisPort()
	if err := b.StopRedis(true); err != nil {
		t.Fatalf("StopRedis(kill): %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("redis-server pid %d still exists after the kill (kill 0: %v)", pid, err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while redis-server was killed")
	}
	if err := b.StartRedis(ctx); err != nil {
		t.Fatalf("StartRedis: %v", err)
	}
	if b.RedisPort() != port {
		t.Fatalf("restarted on port %d, want %d", b.RedisPort(), port)
	}
	if rp.pid() == pid {
		t.Fatalf("restart kept pid %d", pid)
	}
	if got, err := c.Get(ctx, "survivor").Result(); err != nil || got != "yes" {
		t.Fatalf("GET after kill -9 and restart = %q, %v; want yes", got, err)
	}
}

func TestEmbeddedRedisRestartKeepsData(t *testing.T) {
	b := startBackend(t, Options{Redis: RedisEmbedded})
	ctx := context.Background()
	c := redisClient(t, b, "", "", nil)
	if err := c.Set(ctx, "survivor", "yes", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	port := b.RedisPort()
	if err := b.StopRedis(true); err != nil {
		t.Fatal(err)
	}
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("PING answered while the embedded Redis was stopped")
	}
	if err := b.StartRedis(ctx); err != nil {
		t.Fatalf("StartRedis: %v", err)
	}
	if b.RedisPort() != port {
		t.Fatalf("restarted on port %d, want %d", b.RedisPort(), port)
	}
	if got, err := c.Get(ctx, "survivor").Result(); err != nil || got != "yes" {
		t.Fatalf("GET after restart = %q, %v; want yes", got, err)
	}
}

// The managed-service setup: TLS with a private CA and an ACL user, in both servers.
func TestRedisTLSAndAuth(t *testing.T) {
	needRedisServer(t)
	certs, err := NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const secret = "s3cret pass!"
	for _, tc := range []struct {
		name       string
		mode       RedisMode
		user, pass string
	}{
		{"server acl user", RedisServer, "karmesh", secret},
		{"server requirepass", RedisServer, "", secret},
		{"embedded acl user", RedisEmbedded, "karmesh", secret},
		{"embedded requirepass", RedisEmbedded, "", secret},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := startBackend(t, Options{Redis: tc.mode, RedisTLS: certs, RedisUser: tc.user, RedisPassword: tc.pass})
			ctx := context.Background()
			if err := redisClient(t, b, tc.user, tc.pass, certs).Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatalf("SET with the right credentials over TLS: %v", err)
			}
			if err := redisClient(t, b, tc.user, "wrong", certs).Ping(ctx).Err(); err == nil {
				t.Error("PING with a wrong password succeeded")
			}
			if err := redisClient(t, b, "", "", certs).Set(ctx, "k", "v", 0).Err(); err == nil {
				t.Error("SET without credentials succeeded")
			}
			if err := redisClient(t, b, tc.user, tc.pass, nil).Ping(ctx).Err(); err == nil {
				t.Error("PING without TLS succeeded on the TLS port")
			}
			env := envMap(b.Env())
			if env["REDIS_ENABLE_TLS"] != "true" || env["REDIS_CA"] != certs.CABase64() || env["REDIS_PASSWORD"] != tc.pass || env["REDIS_USER"] != tc.user {
				t.Errorf("Env() lacks the TLS or credential variables: %v", b.Env())
			}
			if rp, ok := b.redis.(*redisProcess); ok {
				cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(rp.pid()) + "/cmdline")
				if err == nil && strings.Contains(string(cmdline), tc.pass) {
					t.Errorf("the Redis password shows in redis-server's command line: %q", cmdline)
				}
			}
		})
	}
}

func TestPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().String()
	for _, tc := range []struct {
		name    string
		opts    Options
		service string
	}{
		{"kafka", Options{KafkaAddr: taken, Redis: RedisEmbedded}, "Kafka"},
		{"embedded redis", Options{RedisAddr: taken, Redis: RedisEmbedded}, "Redis"},
		{"redis-server", Options{RedisAddr: taken, Redis: RedisServer}, "Redis"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.opts.Redis == RedisServer {
				needRedisServer(t)
			}
			b, err := Start(context.Background(), tc.opts)
			if err == nil {
				b.Close()
				t.Fatal("Start succeeded on a port in use")
			}
			var pe *PortInUseError
			if !errors.As(err, &pe) || pe.Service != tc.service || pe.Addr != taken {
				t.Fatalf("Start error = %v (%T); want *PortInUseError for %s on %s", err, err, tc.service, taken)
			}
		})
	}
}

func TestBadOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"bad mode", Options{Redis: "docker"}, "unknown Redis mode"},
		{"bad address", Options{KafkaAddr: "31093"}, "bad Kafka address"},
		{"user without password", Options{RedisUser: "karmesh"}, "needs RedisPassword"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := Start(context.Background(), tc.opts)
			if err == nil {
				b.Close()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
}
