package testenv

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// KarSDK is the node_modules folder holding the npm kar-sdk 1.3.10 (and
// express), as scripts/test.sh installs it for the examples. The test is
// skipped when it or node is missing.
func KarSDK(t testing.TB) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	dir := filepath.Join(root, "examples", "service-hello-js", "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "kar-sdk", "index.js")); err != nil {
		t.Skipf("kar-sdk not installed in %s (run scripts/test.sh or npm install there)", dir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not on PATH")
	}
	return dir
}

// H2CServer serves h over HTTP/1.1 and HTTP/2 with prior knowledge, as the
// sidecar's port does for kar-sdk, until the test ends.
func H2CServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// H2CClient speaks HTTP/2 with prior knowledge over plain TCP, as kar-sdk
// does to its sidecar; timeout bounds each call.
func H2CClient(timeout time.Duration) *http.Client {
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Timeout: timeout, Transport: tr}
}

// RunKarSDK runs a node script with kar-sdk (from modules) talking to srv
// as its sidecar, and decodes the JSON object the script prints.
func RunKarSDK(t testing.TB, modules string, srv *httptest.Server, script string) map[string]any {
	t.Helper()
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	cmd := exec.Command("node", "-e", script)
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "KAR_RUNTIME_PORT="+strconv.Itoa(port))
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("node: %v\n%s%s", err, out, stderr)
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node printed %q: %v", out, err)
	}
	return got
}
