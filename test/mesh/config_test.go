package mesh_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/sysmon"
	"github.com/kar-runtime/kar/internal/testenv"
)

// karCmd runs kar with exactly env (plus PATH/HOME) and returns its output and exit code.
func karCmd(t *testing.T, env []string, args ...string) (string, int) {
	t.Helper()
	return testenv.RunKar(t, env, args...)
}

// TestBadConfiguration: each mistake gives one clear line, exit code 2,
// no stack trace, and never a password.
func TestBadConfiguration(t *testing.T) {
	deadPort := strconv.Itoa(testenv.FreePort(t))
	b := testenv.Backend(t)
	good := b.Env()
	cases := []struct {
		name string
		env  []string
		args []string
		says string
	}{
		{"no app", good, []string{"run", "true"}, "no application name"},
		{"bad app name", good, []string{"run", "-app", "a/b", "true"}, "may hold only"},
		{"bad port flag", good, []string{"run", "-app", "x", "-app_port", "http", "true"}, "-app_port"},
		{"bad env", append(good, "REDIS_PORT=six"), []string{"run", "-app", "x", "true"}, "REDIS_PORT"},
		{"bad duration", good, []string{"run", "-app", "x", "-missing_component_timeout", "soon", "true"}, "duration"},
		{"bad verbosity", good, []string{"run", "-app", "x", "-v", "loud", "true"}, "-v"},
		{"unknown flag", good, []string{"run", "-app", "x", "-nope", "true"}, "-nope"},
		{"no kafka", append(good, "KAFKA_BROKERS=127.0.0.1:"+deadPort), []string{"run", "-app", "x", "true"}, "kar dev"},
		{"no redis", append(good, "REDIS_PORT="+deadPort), []string{"rest", "-app", "x", "get", "s", "p"}, "cannot reach Redis"},
		{"bad kafka version", append(good, "KAFKA_VERSION=banana"), []string{"rest", "-app", "x", "get", "s", "p"}, "KAFKA_VERSION"},
		{"rest args", good, []string{"rest", "-app", "x", "get"}, "usage"},
		{"rest method", good, []string{"rest", "-app", "x", "fetch", "s", "p"}, "not an HTTP method"},
		{"unknown command", good, []string{"fly"}, "unknown command"},
		{"missing command", good, []string{"run", "-app", "x", "no-such-program-kar"}, "cannot run"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			out, code := karCmd(t, c.env, c.args...)
			if code != 2 {
				t.Errorf("exit code %d, want 2; output:\n%s", code, out)
			}
			if !strings.Contains(out, c.says) {
				t.Errorf("output does not say %q:\n%s", c.says, out)
			}
			if strings.Contains(out, "goroutine ") || strings.Contains(out, "panic") {
				t.Errorf("stack trace in output:\n%s", out)
			}
		})
	}
	if out, code := karCmd(t, nil, "run", "-h"); code != 0 || !strings.Contains(out, "-app_port") || !strings.Contains(out, "KAR_APP_PORT") {
		t.Errorf("kar run -h: %d\n%s", code, out)
	}
}

// TestConfigDirAndExtraArgs: settings come from a config directory (as
// Kubernetes mounts the secret), KAR_EXTRA_ARGS adds flags, flags win.
func TestConfigDirAndExtraArgs(t *testing.T) {
	b := testenv.Backend(t)
	dir := t.TempDir()
	write := func(k, v string) { os.WriteFile(filepath.Join(dir, k), []byte(v+"\n"), 0o600) }
	write("kafka_brokers", b.KafkaBrokers())
	write("redis_host", b.RedisHost())
	write("redis_port", strconv.Itoa(b.RedisPort()))
	dirEnv := []string{"KAR_CONFIG_DIR=" + dir}
	ex := needNodeExample(t, "service-hello-js")
	port := testenv.FreePort(t)
	server := testenv.Start(t, "server", append(dirEnv, "KAR_EXTRA_ARGS=-service greeter -app_port 1"), ex,
		testenv.KarBin(t), "run", "-app", "cfgdir", "-app_port", strconv.Itoa(port), "node", "server.js")
	waitServes(t, b, "cfgdir", "greeter", 1)
	out, code := karCmd(t, nil, "rest", "-config_dir", dir, "-app", "cfgdir", "post", "greeter", "helloJson", `{"name":"Dir"}`)
	if code != 0 || !strings.Contains(out, "Hello Dir!") {
		t.Fatalf("kar rest with -config_dir: %d %s", code, out)
	}
	_ = server
}

// TestSignalForwarding: SIGTERM to `kar run` reaches the component, the
// sidecar leaves the mesh and exits with the component's exit code.
func TestSignalForwarding(t *testing.T) {
	b := testenv.Backend(t)
	script := `process.on('SIGTERM', () => { console.log('got SIGTERM'); process.exit(7) }); console.log('ready'); setInterval(() => {}, 1000)`
	p := testenv.Start(t, "comp", karEnv(b), "", testenv.KarBin(t), "run", "-app", "sig", "-service", "svc", "-app_ready_timeout", "1ms", "node", "-e", script)
	p.WaitOutput(t, "[STDOUT] ready", 20*time.Second)
	waitServes(t, b, "sig", "svc", 1)
	p.Signal(syscall.SIGTERM)
	code, err := p.Wait(20 * time.Second)
	if err != nil || code != 7 {
		t.Fatalf("exit %d, %v; want the component's 7:\n%s", code, err, p.Output())
	}
	if !strings.Contains(p.Output(), "[STDOUT] got SIGTERM") {
		t.Errorf("component did not get SIGTERM:\n%s", p.Output())
	}
	if n := countService(t, b, "sig", "svc"); n != 0 {
		t.Errorf("%d sidecars still registered after exit", n)
	}
	// A component's own exit code passes through.
	p2 := testenv.Start(t, "exit3", karEnv(b), "", testenv.KarBin(t), "run", "-app", "sig", "sh", "-c", "echo out; echo err >&2; exit 3")
	if code, _ := p2.Wait(20 * time.Second); code != 3 {
		t.Errorf("exit code %d, want 3", code)
	}
	out := p2.Output()
	if !strings.Contains(out, "[STDOUT] out") || !strings.Contains(out, "[STDERR] err") {
		t.Errorf("relay format:\n%s", out)
	}
}

// TestComponentStartsWhileSidecarConnects: the component starts before its
// sidecar has reached the backends, so that a new replica's two starts
// overlap (its first request waits for both); and a sidecar that cannot
// reach them stops the component it started and says why.
func TestComponentStartsWhileSidecarConnects(t *testing.T) {
	b := testenv.Backend(t)
	redis := testenv.StartProxy(t, b.RedisAddr())
	redis.Stall() // the sidecar's connections are accepted, and nothing passes
	greeter := `require('http').createServer((req, res) => res.end('Hello early!')).listen(process.env.KAR_APP_PORT, '127.0.0.1', () => console.log('greeter ready'))`
	p := testenv.Start(t, "early", karEnv(b, "REDIS_PORT="+strconv.Itoa(redis.Port())), "",
		testenv.KarBin(t), "run", "-app", "early", "-service", "greeter", "-app_port", strconv.Itoa(testenv.FreePort(t)), "node", "-e", greeter)
	p.WaitOutput(t, "[STDOUT] greeter ready", 30*time.Second)
	if n := countService(t, b, "early", "greeter"); n != 0 {
		t.Fatalf("%d sidecars of greeter while Redis was stalled", n)
	}
	redis.Restore()
	waitServes(t, b, "early", "greeter", 1)
	if out, errOut, code := rest(t, b, "-app", "early", "get", "greeter", "hello"); code != 0 || !strings.Contains(out, "Hello early!") {
		t.Fatalf("kar rest: %d %q %q", code, out, errOut)
	}

	// Redis refuses: kar stops its component and exits 2, saying why.
	deadPort := strconv.Itoa(testenv.FreePort(t))
	q := testenv.Start(t, "refused", karEnv(b, "REDIS_PORT="+deadPort), "",
		testenv.KarBin(t), "run", "-app", "early", "sh", "-c", "echo pid $$; exec sleep 60")
	code, err := q.Wait(30 * time.Second)
	if err != nil || code != 2 {
		t.Fatalf("exit %d, %v; want 2:\n%s", code, err, q.Output())
	}
	if !strings.Contains(q.Output(), "cannot reach Redis") {
		t.Errorf("kar does not say why it stopped:\n%s", q.Output())
	}
	checkGone(t, q.Output())

	// A component that ignores SIGTERM is killed after a grace: kar exits
	// all the same, and leaves nothing running.
	r := testenv.Start(t, "deaf", karEnv(b, "REDIS_PORT="+deadPort), "",
		testenv.KarBin(t), "run", "-app", "early", "sh", "-c", "trap '' TERM; echo pid $$; exec sleep 60")
	if code, err := r.Wait(40 * time.Second); err != nil || code != 2 {
		t.Fatalf("exit %d, %v; want 2:\n%s", code, err, r.Output())
	}
	if !strings.Contains(r.Output(), "killing it") {
		t.Errorf("kar does not say it killed the component:\n%s", r.Output())
	}
	checkGone(t, r.Output())
}

// checkGone reads the pid a component printed ("pid N") in kar's output
// and checks that the process is gone (killing it if not).
func checkGone(t *testing.T, out string) {
	t.Helper()
	var pid int
	if i := strings.Index(out, "[STDOUT] pid "); i < 0 {
		t.Fatalf("the component did not start:\n%s", out)
	} else if _, err := fmt.Sscan(out[i+len("[STDOUT] pid "):], &pid); err != nil {
		t.Fatalf("no pid in %q: %v", out[i:], err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("the component (pid %d) outlived its sidecar: kill 0: %v", pid, err)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestSecuredBackends: Redis over TLS with an ACL user and password, Kafka
// over TLS with SASL PLAIN (user token), as managed services need; a wrong
// password is a clear error that never shows the password.
func TestSecuredBackends(t *testing.T) {
	certs, err := devenv.NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b := testenv.Backend(t, func(o *devenv.Options) {
		o.RedisTLS, o.KafkaTLS = certs, certs
		o.RedisUser, o.RedisPassword = "karmesh", "redis-secret-42"
		o.KafkaPassword = "kafka-secret-42"
	})
	ex := needNodeExample(t, "service-hello-js")
	startService(t, b, "server", "secure", "greeter", ex, "node", "server.js")
	out, errOut, code := rest(t, b, "-app", "secure", "post", "greeter", "helloJson", `{"name":"TLS"}`)
	if code != 0 || !strings.Contains(out, "Hello TLS!") {
		t.Fatalf("over TLS: %d %q %q", code, out, errOut)
	}
	for _, bad := range [][]string{{"REDIS_PASSWORD=wrong-redis-pw"}, {"KAFKA_PASSWORD=wrong-kafka-pw"}} {
		out, code := karCmd(t, append(b.Env(), bad...), "rest", "-app", "secure", "post", "greeter", "helloJson", "{}")
		if code != 2 {
			t.Errorf("%v: exit %d:\n%s", bad, code, out)
		}
		for _, secret := range []string{"wrong-redis-pw", "wrong-kafka-pw", "redis-secret-42", "kafka-secret-42"} {
			if strings.Contains(out, secret) {
				t.Errorf("%v: output shows a password:\n%s", bad, out)
			}
		}
		if !strings.Contains(out, "PASSWORD") && !strings.Contains(out, "credentials") {
			t.Errorf("%v: error does not point at the credentials:\n%s", bad, out)
		}
	}
}

// TestSidecarRunsWithQuietSysmon: a sidecar runs under
// GODEBUG=schedtrace=2147483647 (internal/sysmon). A kar built as it ships
// (sysmon.LinkerFlags) has it linked in and starts once, under the GODEBUG
// it was given; a kar built without it runs itself again with the setting
// added to GODEBUG. Either way the component gets GODEBUG as kar was given
// it, and a schedtrace of the user's own is kept.
func TestSidecarRunsWithQuietSysmon(t *testing.T) {
	b := testenv.Backend(t)
	dir := t.TempDir()
	build := func(name string, ldflags ...string) string {
		out := filepath.Join(dir, name)
		args := append([]string{"build", "-trimpath", "-o", out}, ldflags...)
		cmd := exec.Command("go", append(args, "github.com/kar-runtime/kar/cmd/kar")...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", name, err, b)
		}
		return out
	}
	linked := build("kar-linked", "-ldflags", sysmon.LinkerFlags)
	plain := build("kar-plain")
	cases := []struct {
		name, bin      string
		given          string // GODEBUG given to kar run ("" for none)
		kar, component string // what kar and the component then run under
	}{
		{"linked, none", linked, "", "", "godebug=[unset]"},
		{"linked, users", linked, "GODEBUG=madvdontneed=1", "GODEBUG=madvdontneed=1", "godebug=[madvdontneed=1]"},
		{"plain, none", plain, "", "GODEBUG=schedtrace=2147483647", "godebug=[unset]"},
		{"plain, users", plain, "GODEBUG=madvdontneed=1", "GODEBUG=madvdontneed=1,schedtrace=2147483647", "godebug=[madvdontneed=1]"},
		{"plain, own schedtrace", plain, "GODEBUG=schedtrace=0", "GODEBUG=schedtrace=0", "godebug=[schedtrace=0]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			env := karEnv(b)
			if c.given != "" {
				env = append(env, c.given)
			}
			p := testenv.Start(t, "godebug", env, "", c.bin, "run", "-app", "godebug",
				"sh", "-c", `echo "godebug=[${GODEBUG-unset}]"; while [ ! -e /nonexistent-stop ]; do sleep 0.05; done`)
			p.WaitOutput(t, "[STDOUT] "+c.component, 20*time.Second)
			// The kernel keeps the environment a process was started with:
			// exec'd again, kar has the setting in it.
			environ, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID()) + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			for _, kv := range strings.Split(string(environ), "\x00") {
				if strings.HasPrefix(kv, "GODEBUG=") {
					got = kv
				}
			}
			if got != c.kar {
				t.Errorf("kar runs under %q, want %q", got, c.kar)
			}
			p.Kill()
		})
	}
}
