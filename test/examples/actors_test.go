package examples_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

// dpServer starts the dining philosophers' actor component as
// examples/actors-js/README.md says.
func dpServer(t *testing.T, b *devenv.Backend, name, dir string) *testenv.Proc {
	t.Helper()
	p := karRun(t, b, name, dir, nil, "-app", "dp", "-actors", "Cafe,Table,Fork,Philosopher", "node", "server.js")
	p.WaitOutput(t, "dining philosophers listening", 30*time.Second)
	return p
}

// dpTester starts the tester component with n philosophers and m servings.
func dpTester(t *testing.T, b *devenv.Backend, dir, n, m string) *testenv.Proc {
	t.Helper()
	env := []string{"DP_PHILOSOPHERS=" + n, "DP_SERVINGS=" + m, "DP_TIMEOUT=50"}
	return karRun(t, b, "tester", dir, env, "-app", "dp", "node", "tester.js")
}

// waitSuccess waits for the tester to exit 0 having printed SUCCESS.
func waitSuccess(t *testing.T, tester *testenv.Proc) {
	t.Helper()
	code, err := tester.Wait(60 * time.Second)
	if err != nil || code != 0 || !strings.Contains(tester.Output(), "[STDOUT] SUCCESS") {
		t.Fatalf("tester: exit %d, %v; output:\n%s", code, err, tester.Output())
	}
}

// TestDiningPhilosophers runs examples/actors-js: the simulation converges
// and the tester's invariants hold.
func TestDiningPhilosophers(t *testing.T) {
	b := testenv.Backend(t)
	dir := nodeExample(t, "actors-js")
	dumpOnFailure(t, b, "dp")
	server := dpServer(t, b, "server", dir)
	waitSuccess(t, dpTester(t, b, dir, "5", "5"))
	if n := strings.Count(server.Output(), "] Philosopher "); n < 25 {
		t.Errorf("the server logged %d meals and departures, want at least 25:\n%s", n, server.Output())
	}
	if server.Exited() {
		t.Fatalf("the server exited:\n%s", server.Output())
	}
}

// TestDiningPhilosophersServerKilled kills the actor component and its
// sidecar (-9) in the middle of the meal and starts a new one: the actors
// are placed on the new component, their reminders fire there, and the
// simulation still converges with its invariants intact.
func TestDiningPhilosophersServerKilled(t *testing.T) {
	b := testenv.Backend(t)
	dir := nodeExample(t, "actors-js")
	dumpOnFailure(t, b, "dp")
	first := dpServer(t, b, "server1", dir)
	tester := dpTester(t, b, dir, "5", "8")
	first.WaitOutput(t, "ate serving 2 of 8", 40*time.Second)
	first.Kill()
	if _, err := first.Wait(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(tester.Output(), "SUCCESS") {
		t.Fatalf("the meal was over before the kill; the test proves nothing:\n%s", tester.Output())
	}
	second := dpServer(t, b, "server2", dir)
	waitSuccess(t, tester)
	if !strings.Contains(second.Output(), "ate serving") {
		t.Errorf("no philosopher ate on the new server:\n%s", second.Output())
	}
}

// TestCounterGo runs examples/actors-go: a Counter actor served by plain
// net/http and a client calling it through the actor REST API.
func TestCounterGo(t *testing.T) {
	b := testenv.Backend(t)
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin, "./server", "./client")
	build.Dir = example("actors-go")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	// go build -o DIR names the binaries after their package directories.
	server := karRun(t, b, "server", bin, nil, "-app", "counter", "-actors", "Counter", filepath.Join(bin, "server"))
	server.WaitOutput(t, "Counter actors listening", 30*time.Second)

	for i, id := range []string{"c1", "c1", "c2"} {
		client := karRun(t, b, "client", bin, nil, "-app", "counter", filepath.Join(bin, "client"), "-id", id, "-n", "10")
		code, err := client.Wait(30 * time.Second)
		if err != nil || code != 0 || !strings.Contains(client.Output(), "[STDOUT] SUCCESS") {
			t.Fatalf("client #%d (%s): exit %d, %v; output:\n%s", i, id, code, err, client.Output())
		}
		// The client resets its counter at the end: a second run starts at 0.
		if !strings.Contains(client.Output(), "Counter "+id+" starts at 0") {
			t.Errorf("client #%d did not start at 0:\n%s", i, client.Output())
		}
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Contains(server.Output(), "activated") && strings.Contains(server.Output(), "id=c2")
	}, "the server to log the activation of c2")

	// The README's one-liner: kar invoke prints the method's value.
	for _, c := range []struct{ by, want string }{{"5", "Method result: 5"}, {"7", "Method result: 12"}} {
		inv := exec.Command(testenv.KarBin(t), "invoke", "-app", "counter", "Counter", "c3", "incr", c.by)
		inv.Env = append(inv.Environ(), karEnv(b)...)
		out, err := inv.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != c.want {
			t.Fatalf("kar invoke -app counter Counter c3 incr %s: %v, output %q, want %s", c.by, err, out, c.want)
		}
	}
}
