package testenv

import (
	"context"
	"fmt"
	"github.com/kar-runtime/kar/internal/ports"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestBackendServesRealRedis(t *testing.T) {
	b := Backend(t)
	if d := b.RedisDescription(); !strings.HasPrefix(d, "redis-server") {
		t.Fatalf("Backend serves %q, want the real redis-server", d)
	}
	c := redis.NewClient(&redis.Options{Addr: b.RedisAddr()})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
}

func TestProcOutputAndExitCode(t *testing.T) {
	p := Start(t, "sh", []string{"TESTENV_GREETING=hello"}, t.TempDir(),
		"sh", "-c", `echo "$TESTENV_GREETING out"; echo oops >&2; printf partial; exit 3`)
	p.WaitOutput(t, "hello out", 10*time.Second)
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 3 {
		t.Fatalf("Wait = %d, %v; want 3", code, err)
	}
	out := p.Output()
	for _, want := range []string{"hello out\n", "stderr oops\n", "partial\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("Output() = %q, lacks %q", out, want)
		}
	}
}

func TestProcSignalAndKillGroup(t *testing.T) {
	// The shell traps TERM and says so; its child sleep is in the same
	// process group and must die with Kill.
	dir := t.TempDir()
	p := Start(t, "trap", nil, dir, "sh", "-c",
		`trap 'echo got-term' TERM; sleep 300 & echo "child $!"; while :; do wait; done`)
	p.WaitOutput(t, "child ", 10*time.Second)
	var childPID int
	for _, f := range strings.Fields(p.Output()) {
		if n, err := strconv.Atoi(f); err == nil {
			childPID = n
		}
	}
	if childPID == 0 {
		t.Fatalf("no child pid in %q", p.Output())
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.WaitOutput(t, "got-term", 10*time.Second)
	if p.Exited() {
		t.Fatal("the shell exited on a trapped SIGTERM")
	}
	p.Kill()
	code, err := p.Wait(10 * time.Second)
	if err != nil || code != 128+int(syscall.SIGKILL) {
		t.Fatalf("Wait after Kill = %d, %v; want %d", code, err, 128+int(syscall.SIGKILL))
	}
	Eventually(t, 10*time.Second, func() bool {
		return syscall.Kill(childPID, 0) == syscall.ESRCH || isZombie(childPID)
	}, "child sleep (pid %d) to die with its process group", childPID)
}

func TestWaitOutputFailsWhenProcessExits(t *testing.T) {
	ft := &fakeT{TB: t}
	p := Start(t, "true", nil, "", "true")
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		p.WaitOutput(ft, "never printed", 10*time.Second)
	}()
	<-done
	if !ft.failed || !strings.Contains(ft.msg, "exited") {
		t.Fatalf("WaitOutput on an exited process: failed=%v msg=%q", ft.failed, ft.msg)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	Eventually(t, 5*time.Second, func() bool { n++; return n >= 3 }, "n reaches 3")
	if n != 3 {
		t.Fatalf("cond called %d times, want 3", n)
	}

	ft := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() { _ = recover() }()
		Eventually(ft, 30*time.Millisecond, func() bool { return false }, "the %s", "impossible")
	}()
	<-done
	if !ft.failed || !strings.Contains(ft.msg, "the impossible") {
		t.Fatalf("Eventually on a false condition: failed=%v msg=%q", ft.failed, ft.msg)
	}
}

func TestFreePort(t *testing.T) {
	a, b := FreePort(t), FreePort(t)
	if a <= 0 || b <= 0 {
		t.Fatalf("FreePort = %d, %d", a, b)
	}
}

func TestKarBinRunsVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kar")
	}
	p := Start(t, "kar", nil, "", KarBin(t), "version")
	if code, err := p.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("kar version exit = %d, %v; output:\n%s", code, err, p.Output())
	}
}

// fakeT records a failure instead of failing the real test; Fatalf stops
// the goroutine as the real one does.
type fakeT struct {
	testing.TB
	failed bool
	msg    string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = true
	f.msg = fmt.Sprintf(format, args...)
	panic("fakeT.Fatalf")
}

func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// Field 3 is the state; the command in field 2 is in parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}

func TestStartDropsKarEnvironment(t *testing.T) {
	t.Setenv("KAR_APP", "from-the-shell")
	t.Setenv("REDIS_PORT", "1")
	t.Setenv("TESTENV_KEPT", "kept")
	p := Start(t, "env", []string{"KAFKA_BROKERS=given"}, "", "sh", "-c",
		`echo "app=${KAR_APP-unset} port=${REDIS_PORT-unset} kafka=$KAFKA_BROKERS other=$TESTENV_KEPT"`)
	p.WaitOutput(t, "app=unset port=unset kafka=given other=kept", 10*time.Second)
}

func TestBackendManagedServices(t *testing.T) {
	certs := Certs(t)
	b := Backend(t, ManagedServices(certs, "kpass", "karmesh", "rpass"))
	env := map[string]string{}
	for _, kv := range b.Env() {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	for k, want := range map[string]string{
		"KAFKA_ENABLE_TLS": "true", "KAFKA_USERNAME": "token", "KAFKA_PASSWORD": "kpass",
		"REDIS_ENABLE_TLS": "true", "REDIS_USER": "karmesh", "REDIS_PASSWORD": "rpass", "REDIS_CA": certs.CABase64(),
	} {
		if env[k] != want {
			t.Errorf("Env()[%s] = %q, want %q", k, env[k], want)
		}
	}
	c := redis.NewClient(&redis.Options{Addr: b.RedisAddr(), Username: "karmesh", Password: "rpass", TLSConfig: certs.ClientConfig()})
	defer c.Close()
	if err := c.Ping(context.Background()).Err(); err != nil {
		t.Fatalf("PING over TLS as karmesh: %v", err)
	}
}

// A grandchild in a process group of its own dies with Kill too.
func TestKillReachesOtherProcessGroups(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("setsid not installed")
	}
	p := Start(t, "setsid", nil, "", "sh", "-c", `setsid sleep 300 & echo "child $!"; wait`)
	p.WaitOutput(t, "child ", 10*time.Second)
	var childPID int
	for _, f := range strings.Fields(p.Output()) {
		if n, err := strconv.Atoi(f); err == nil {
			childPID = n
		}
	}
	Eventually(t, 10*time.Second, func() bool {
		pgid, err := syscall.Getpgid(childPID)
		return err == nil && pgid == childPID
	}, "sleep (pid %d) to lead its own process group", childPID)
	p.Kill()
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 10*time.Second, func() bool {
		return syscall.Kill(childPID, 0) == syscall.ESRCH || isZombie(childPID)
	}, "sleep (pid %d) in its own session to die", childPID)
}

// TestFreePortBelowEphemeralRange: FreePort hands out ports that no
// outgoing connection can take (below the kernel's ephemeral range), each
// once at a time across the machine's test processes (a lock file).
func TestFreePortBelowEphemeralRange(t *testing.T) {
	lo, hi := ports.Range()
	if hi <= lo {
		t.Skipf("the ephemeral range starts at %d: FreePort falls back to a kernel pick", hi)
	}
	seen := map[int]bool{}
	for range 20 {
		p := FreePort(t)
		if p < lo || p >= hi {
			t.Fatalf("FreePort = %d, want in [%d, %d)", p, lo, hi)
		}
		if seen[p] {
			t.Fatalf("FreePort gave %d twice in one test", p)
		}
		seen[p] = true
		if claim(filepath.Join(os.TempDir(), "kar-test-ports", strconv.Itoa(p))) {
			t.Fatalf("port %d is not locked while the test runs", p)
		}
	}
}
