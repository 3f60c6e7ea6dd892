package probe

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func portOf(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Port()
}

// TestMainExitCodes covers the command line and how the answer maps to the exit
// code the kubelet acts on, against a stand-in sidecar.
func TestMainExitCodes(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path)
		mu.Unlock()
		if r.URL.Path == "/kar/v1/system/health" && r.Method == http.MethodGet {
			w.Write([]byte("OK"))
			return
		}
		http.Error(w, "nope", http.StatusInternalServerError)
	}))
	defer srv.Close()
	port := portOf(t, srv)
	closed := strconv.Itoa(testenv.FreePort(t))

	tests := []struct {
		name     string
		args     []string
		env      string // KAR_RUNTIME_PORT
		wantCode int
		wantOut  string
		wantErr  string
		wantSeen string
	}{
		{name: "health", args: []string{"-runtime_port", port, "health"}, wantCode: 0, wantOut: "OK", wantSeen: "GET /kar/v1/system/health"},
		{name: "port from KAR_RUNTIME_PORT", args: []string{"health"}, env: port, wantCode: 0, wantOut: "OK", wantSeen: "GET /kar/v1/system/health"},
		{name: "shutdown answered 500", args: []string{"-runtime_port", port, "shutdown"}, wantCode: ExitFailed, wantErr: "POST /kar/v1/system/shutdown answered 500: nope", wantSeen: "POST /kar/v1/system/shutdown"},
		{name: "nobody listening", args: []string{"-runtime_port", closed, "health"}, wantCode: ExitFailed, wantErr: "127.0.0.1:" + closed},
		{name: "no action", args: []string{"-runtime_port", port}, wantCode: ExitUsage, wantErr: "Usage: kar probe"},
		{name: "two actions", args: []string{"health", "shutdown"}, wantCode: ExitUsage, wantErr: "Usage: kar probe"},
		{name: "unknown action", args: []string{"ready"}, wantCode: ExitUsage, wantErr: `unknown action "ready"`},
		{name: "bad port", args: []string{"-runtime_port", "0", "health"}, wantCode: ExitUsage, wantErr: "not a port number"},
		{name: "bad timeout", args: []string{"-timeout", "0s", "health"}, wantCode: ExitUsage, wantErr: "must be positive"},
		{name: "unknown flag", args: []string{"-x", "health"}, wantCode: ExitUsage, wantErr: "flag provided but not defined: -x"},
		{name: "help", args: []string{"-h"}, wantCode: 0, wantErr: "Usage: kar probe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KAR_RUNTIME_PORT", tt.env)
			mu.Lock()
			seen = nil
			mu.Unlock()
			code, out, errOut := run(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(out, tt.wantOut) || !strings.Contains(errOut, tt.wantErr) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out, errOut, tt.wantCode, tt.wantOut, tt.wantErr)
			}
			mu.Lock()
			got := strings.Join(seen, ",")
			mu.Unlock()
			if got != tt.wantSeen {
				t.Fatalf("sidecar saw %q, want %q", got, tt.wantSeen)
			}
		})
	}
}

// TestAgainstKar runs the probe and the hook as the kubelet would, with
// the kar binary, against a real `kar run` sidecar: health succeeds while
// it runs, shutdown makes it exit, and health then fails.
func TestAgainstKar(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a sidecar")
	}
	b := testenv.Backend(t)
	kar := testenv.KarBin(t)
	port := strconv.Itoa(testenv.FreePort(t))
	sidecar := testenv.Start(t, "sidecar", b.Env(), "", kar, "run", "-app", "probe-test", "-runtime_port", port)
	probe := func(action string) (int, string) {
		p := testenv.Start(t, "probe-"+action, nil, "", kar, "probe", "-runtime_port", port, action)
		code, err := p.Wait(30 * time.Second)
		if err != nil {
			t.Fatalf("kar probe %s: %v", action, err)
		}
		return code, p.Output()
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		code, _ := probe("health")
		return code == 0
	}, "kar probe health succeeds against a running sidecar")
	if code, out := probe("health"); code != 0 || !strings.Contains(out, "OK") {
		t.Fatalf("kar probe health: exit %d: %s", code, out)
	}
	if code, out := probe("shutdown"); code != 0 {
		t.Fatalf("kar probe shutdown: exit %d: %s", code, out)
	}
	code, err := sidecar.Wait(30 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("sidecar after shutdown: exit %d, %v", code, err)
	}
	if code, out := probe("health"); code != ExitFailed || !strings.Contains(out, "127.0.0.1:"+port) {
		t.Fatalf("kar probe health on a stopped sidecar: exit %d: %s", code, out)
	}
}
