package autoscale_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/autoscale/autoscaletest"
	"github.com/kar-runtime/kar/internal/testenv"
)

// component answers /x at once and /slow after a second, on KAR_APP_PORT.
const component = `require('http').createServer((q, s) => {
  if (q.url.endsWith('/slow')) setTimeout(() => s.end('ok'), 1000); else s.end('ok');
}).listen(+process.env.KAR_APP_PORT, '127.0.0.1');
`

// TestLocalScaleFromZeroAndBack: `kar autoscale` (a process) starts no
// replica while idle; a synchronous call to the service is held, starts a
// replica and is answered; calls in flight beyond the target take it to
// the maximum; idle again, it returns to zero after the cooldown, and a
// `kar rest` call from zero is answered; SIGTERM stops it and its replicas.
func TestLocalScaleFromZeroAndBack(t *testing.T) {
	b := testenv.Backend(t)
	const app = "localauto"
	script := filepath.Join(t.TempDir(), "server.js")
	if err := os.WriteFile(script, []byte(component), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := autoscaletest.Source(t, b)
	members := func() int {
		in, err := src.Read(ctx, autoscale.Target{App: app, Type: "service", Name: "worker"})
		if err != nil {
			t.Fatalf("read the load: %v", err)
		}
		return in.Members
	}

	scaler := testenv.Start(t, "autoscale", b.Env(), "", testenv.KarBin(t), "autoscale", "-app", app, "-service", "worker",
		"-max", "3", "-target", "1", "-poll", "100ms", "-scale_down_window", "500ms", "-cooldown", "2s", "--", "node", script)
	caller := autoscaletest.Sidecar(t, b, "caller", "-app", app)
	if n := members(); n != 0 {
		t.Fatalf("idle: %d replicas, want 0", n)
	}

	call := func(path string) (int, time.Duration) {
		begin := time.Now()
		req, _ := http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("http://127.0.0.1:%d/kar/v1/service/worker/call/%s", caller, path), nil)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("call %s: %v", path, err)
			return 0, 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, time.Since(begin)
	}
	status, took := call("x")
	if status != 200 {
		t.Fatalf("call from zero: %d", status)
	}
	t.Logf("from zero replicas to the answer: %v", took)

	// Six slow calls at once, one per replica wanted: up to the maximum.
	var wg sync.WaitGroup
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				if s, _ := call("slow"); s != 200 {
					t.Errorf("slow call: %d", s)
				}
			}
		}()
	}
	testenv.Eventually(t, 30*time.Second, func() bool { return members() == 3 }, "3 replicas under load (last %d)", members())
	wg.Wait()
	testenv.Eventually(t, 30*time.Second, func() bool { return members() == 0 }, "back to 0 after the cooldown (last %d)", members())

	// From zero again, a one-shot `kar rest` call (its sidecar lives for
	// the call only) is answered.
	rest := exec.CommandContext(ctx, testenv.KarBin(t), "rest", "-app", app, "POST", "worker", "x")
	rest.Env = append(os.Environ(), b.Env()...)
	begin := time.Now()
	if out, err := rest.CombinedOutput(); err != nil || !strings.Contains(string(out), "ok") {
		t.Fatalf("kar rest from zero: %v\n%s", err, out)
	}
	t.Logf("kar rest from zero replicas: answered in %v", time.Since(begin))

	if err := scaler.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code, err := scaler.Wait(40 * time.Second); err != nil || code != 0 {
		t.Errorf("kar autoscale after SIGTERM: exit %d, %v", code, err)
	}
}
