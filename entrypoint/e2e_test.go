package entrypoint_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/internal/testenv"
)

// greeter returns the directory of the Node.js greeter example, ready to run.
func greeter(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	dir, err := filepath.Abs("../examples/service-hello-js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "express")); err != nil {
		t.Fatalf("run npm install in %s first (scripts/test.sh does): %v", dir, err)
	}
	return dir
}

// TestSidecarInContainer runs a component the way the kar base images do
// on Code Engine and Knative: `kar entrypoint -- node server.js`,
// configured only by the environment a deployment sets (Component.Env plus
// the backend variables of the runtime-config secret), and calls it through
// the mesh.
func TestSidecarInContainer(t *testing.T) {
	dir := greeter(t)
	kar := testenv.KarBin(t)
	b := testenv.Backend(t)
	port := testenv.FreePort(t)
	c := entrypoint.Component{App: "hello-ep", Service: "greeter", Port: port, Verbose: "info"}
	env := append(b.Env(), "KAR_CONFIG_DIR="+t.TempDir())
	for _, v := range c.Env() {
		env = append(env, v.Name+"="+v.Value)
	}
	srv := testenv.Start(t, "container", env, dir, kar, "entrypoint", "--", "node", "server.js")
	srv.WaitOutput(t, "greeter listening on "+strconv.Itoa(port), 30*time.Second)
	// kar run relays the component's output with its [STDOUT] prefix:
	// the command runs under the sidecar, not alone.
	if !strings.Contains(srv.Output(), "[STDOUT] greeter listening") {
		t.Fatalf("component output not relayed by a sidecar:\n%s", srv.Output())
	}
	call := testenv.Start(t, "client", b.Env(), "", kar, "rest", "-app", "hello-ep", "-content_type", "text/plain",
		"post", "greeter", "helloText", "Knative")
	code, err := call.Wait(60 * time.Second)
	if err != nil || code != 0 || !strings.Contains(call.Output(), "Hello Knative!") {
		t.Fatalf("kar rest: exit %d, %v\n%s", code, err, call.Output())
	}
	srv.Signal(syscall.SIGTERM)
	if _, err := srv.Wait(30 * time.Second); err != nil {
		t.Fatalf("container did not stop on SIGTERM: %v", err)
	}
}
