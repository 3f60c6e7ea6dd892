package mesh_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKarSDK runs the npm kar-sdk 1.3.10 unmodified (h2c with prior
// knowledge to the sidecar): call, tell and asyncCall.
func TestKarSDK(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	server, _ := startService(t, b, "server", "sdk", "greeter", dir, "node", "server.js")
	client := testenv.Start(t, "client", karEnv(b), dir, testenv.KarBin(t), "run", "-app", "sdk", "node", "client-sdk.js")
	code, err := client.Wait(60 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("client exit %d, %v:\n%s", code, err, client.Output())
	}
	for _, want := range []string{"[STDOUT] call: Hello SDK Call!", "[STDOUT] tell: OK", "[STDOUT] asyncCall: Hello SDK Async!"} {
		if !strings.Contains(client.Output(), want) {
			t.Errorf("client output lacks %q:\n%s", want, client.Output())
		}
	}
	server.WaitOutput(t, "[STDOUT] Hello SDK Tell!", 20*time.Second)
}

// TestHelloGo runs the Go twin of the hello world.
func TestHelloGo(t *testing.T) {
	b := testenv.Backend(t)
	bin := t.TempDir()
	for _, c := range []string{"server", "client"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, c), "./"+c)
		cmd.Dir = example(t, "service-hello-go")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", c, err, out)
		}
	}
	server, _ := startService(t, b, "server", "hello-go", "greeter", "", filepath.Join(bin, "server"))
	client := testenv.Start(t, "client", karEnv(b), "", testenv.KarBin(t), "run", "-app", "hello-go", filepath.Join(bin, "client"))
	code, err := client.Wait(60 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("client exit %d, %v:\n%s", code, err, client.Output())
	}
	if n := strings.Count(client.Output(), "[STDOUT] Hello John Doe!"); n != 2 {
		t.Errorf("client printed Hello John Doe! %d times:\n%s", n, client.Output())
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Count(server.Output(), "[STDOUT] Hello John Doe!") == 2
	}, "server greets twice")
}

// TestTwoApps: two applications with the same service name on the same
// Redis and Kafka do not see each other.
func TestTwoApps(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	a, _ := startService(t, b, "app-a", "app-a", "greeter", dir, "node", "server.js")
	bb, _ := startService(t, b, "app-b", "app-b", "greeter", dir, "node", "server.js")
	for i := 0; i < 3; i++ {
		if out, _, code := rest(t, b, "-app", "app-a", "-content_type", "text/plain", "post", "greeter", "helloText", "to-a"); code != 0 || !strings.Contains(out, "Hello to-a!") {
			t.Fatalf("app-a: %d %q", code, out)
		}
		if out, _, code := rest(t, b, "-app", "app-b", "-content_type", "text/plain", "post", "greeter", "helloText", "to-b"); code != 0 || !strings.Contains(out, "Hello to-b!") {
			t.Fatalf("app-b: %d %q", code, out)
		}
	}
	if strings.Contains(a.Output(), "to-b") || strings.Contains(bb.Output(), "to-a") {
		t.Errorf("a request crossed applications:\nA:\n%s\nB:\n%s", a.Output(), bb.Output())
	}
	// An app with no such service waits, it does not borrow the other's.
	_, errOut, code := rest(t, b, "-app", "app-c", "-o", "json", "-missing_component_timeout", "300ms", "post", "greeter", "helloText", "x")
	if code == 0 || !strings.Contains(errOut, "no component") {
		t.Errorf("app-c reached another app's greeter: %d %q", code, errOut)
	}
}
