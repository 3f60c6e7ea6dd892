// Package testenv is the harness of kar's integration tests: a real
// Kafka-protocol broker and redis-server on free ports (through devenv), the
// kar binary, processes stopped by their PID, and waiting on conditions
// with deadlines instead of sleeping.
//
// A typical test:
//
//	b := testenv.Backend(t)                  // broker + redis-server, stopped at the end
//	port := testenv.FreePort(t)
//	env := append(b.Env(), "KAR_APP=hello")
//	srv := testenv.Start(t, "server", env, "", testenv.KarBin(t), "run",
//		"-service", "greeter", "-app_port", strconv.Itoa(port), "--", "node", "server.js")
//	srv.WaitOutput(t, "listening", 10*time.Second)
//	testenv.Eventually(t, 10*time.Second, func() bool { ... }, "greeter to answer")
//	srv.Signal(syscall.SIGTERM)
//	code, err := srv.Wait(10 * time.Second)
//
// Fault tests stop and restart the backends: b.StopRedis(true) is kill -9,
// b.StartRedis(ctx) brings it back on the same port (with data when the
// backend was started with DataDir(t.TempDir())); b.StopKafka/StartKafka
// likewise. Proc.Kill is kill -9 of a process and all its descendants.
package testenv

import (
	"context"
	"fmt"
	"github.com/kar-runtime/kar/internal/ports"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
)

// Option adjusts the devenv options of Backend, e.g. to add TLS or passwords.
type Option func(*devenv.Options)

// Backend serves a Kafka-protocol broker and the real redis-server on free
// loopback ports until the test ends. b.Env() is what a kar process needs.
// It fails the test when redis-server is missing (CI installs it), unless
// an option asks for the embedded Redis.
func Backend(t testing.TB, opts ...Option) *devenv.Backend {
	t.Helper()
	o := devenv.Options{Redis: devenv.RedisServer}
	for _, opt := range opts {
		opt(&o)
	}
	if o.Redis == devenv.RedisServer {
		if _, err := exec.LookPath("redis-server"); err != nil {
			t.Fatalf("testenv: redis-server is not on PATH; install it (Debian: apt-get install redis-server): %v", err)
		}
	}
	if o.Logger == nil {
		o.Logger = testLogger(t, "devenv")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := devenv.Start(ctx, o)
	if err != nil {
		t.Fatalf("testenv: cannot start the backends: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("testenv: stopping the backends: %v", err)
		}
	})
	return b
}

// FreePort returns a loopback TCP port for a process the test starts:
// one below the kernel's ephemeral range (package ports says why), claimed
// with a lock file so that no other test process on the machine (go test
// runs packages side by side) is given it while this test runs.
func FreePort(t testing.TB) int {
	t.Helper()
	dir := filepath.Join(os.TempDir(), "kar-test-ports")
	if err := os.MkdirAll(dir, 0o777); err == nil {
		lock := func(port int) string { return filepath.Join(dir, strconv.Itoa(port)) }
		port, err := ports.Pick(func(p int) bool { return claim(lock(p)) }, func(p int) { os.Remove(lock(p)) })
		if err == nil {
			t.Cleanup(func() { os.Remove(lock(port)) })
			return port
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: no free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// claim creates the lock file of a port unless another test process holds
// it. A lock older than an hour was left by a test process that was
// killed: it is taken over.
func claim(lock string) bool {
	f, err := os.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err == nil {
		f.Close()
		return true
	}
	if st, serr := os.Stat(lock); serr == nil && time.Since(st.ModTime()) > time.Hour {
		now := time.Now()
		return os.Chtimes(lock, now, now) == nil
	}
	return false
}

// pollInterval is how often Eventually checks: short against the tests'
// latency, long enough not to load a 2-core machine.
const pollInterval = 10 * time.Millisecond

// Eventually polls cond until it holds, failing the test after timeout.
// msgf, when given, is a format and its arguments saying what was awaited.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msgf ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("testenv: condition not met within %s: %s", timeout, describe(msgf))
		}
		time.Sleep(pollInterval)
	}
}

func describe(msgf []any) string {
	if len(msgf) == 0 {
		return "(no description)"
	}
	if f, ok := msgf[0].(string); ok {
		return fmt.Sprintf(f, msgf[1:]...)
	}
	return fmt.Sprint(msgf...)
}

// KafkaBrokers serves a Kafka-protocol cluster of n brokers (in one
// process); b.KafkaBrokers() lists them all and b.KafkaCluster() moves
// partition leaders.
func KafkaBrokers(n int) Option { return func(o *devenv.Options) { o.KafkaBrokers = n } }

// EmbeddedRedis serves the in-process Redis instead of redis-server.
func EmbeddedRedis() Option { return func(o *devenv.Options) { o.Redis = devenv.RedisEmbedded } }

// DataDir keeps Redis and Kafka data in dir across StopRedis/StartRedis and
// StopKafka/StartKafka (use t.TempDir()).
func DataDir(dir string) Option { return func(o *devenv.Options) { o.DataDir = dir } }

// ManagedServices sets up the backends as IBM's managed services are: TLS
// with a private CA on both, Kafka SASL PLAIN as user "token", and a Redis
// ACL user. Env() then carries the CA, the users and the passwords.
func ManagedServices(certs *devenv.Certs, kafkaPassword, redisUser, redisPassword string) Option {
	return func(o *devenv.Options) {
		o.KafkaTLS, o.RedisTLS = certs, certs
		o.KafkaPassword = kafkaPassword
		o.RedisUser, o.RedisPassword = redisUser, redisPassword
	}
}

// Certs makes a throwaway CA and a server certificate for 127.0.0.1 and
// localhost in a temporary directory of the test.
func Certs(t testing.TB) *devenv.Certs {
	t.Helper()
	c, err := devenv.NewCerts(t.TempDir())
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return c
}

// RunUntilStopped runs run(ctx) in the background until stop is called or
// the test ends, and fails the test if run errs or does not return within
// grace of its context's end.
func RunUntilStopped(t testing.TB, grace time.Duration, run func(ctx context.Context) error) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(grace):
				t.Errorf("Run did not return within %s of cancellation", grace)
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// WaitHealthy waits until the sidecar whose REST API is at base answers
// its health check with 200.
func WaitHealthy(t testing.TB, base string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() bool {
		resp, err := http.Get(base + "/kar/v1/system/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "sidecar %s healthy", base)
}
