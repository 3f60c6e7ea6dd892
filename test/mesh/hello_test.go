package mesh_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestHelloJS runs the deployment guide's hello world: a greeter served by
// express, a client using plain fetch, then `kar rest`.
func TestHelloJS(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	server, _ := startService(t, b, "server", "hello-js", "greeter", dir, "node", "server.js")

	client := testenv.Start(t, "client", karEnv(b), dir, testenv.KarBin(t), "run", "-app", "hello-js", "node", "client.js")
	code, err := client.Wait(60 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("client exit %d, %v; output:\n%s", code, err, client.Output())
	}
	if n := strings.Count(client.Output(), "[STDOUT] Hello John Doe!"); n != 2 {
		t.Errorf("client printed Hello John Doe! %d times, want 2:\n%s", n, client.Output())
	}
	testenv.Eventually(t, 10*time.Second, func() bool {
		return strings.Count(server.Output(), "[STDOUT] Hello John Doe!") == 2
	}, "server prints Hello John Doe! twice")

	out, errOut, code := rest(t, b, "-app", "hello-js", "post", "greeter", "helloJson", `{"name": "Alan Turing"}`)
	if code != 0 || strings.TrimSpace(out) != `{"greetings":"Hello Alan Turing!"}` {
		t.Fatalf("kar rest: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if server.Exited() {
		t.Fatalf("the server exited:\n%s", server.Output())
	}
}
