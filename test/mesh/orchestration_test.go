package mesh_test

import (
	"bufio"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

// startOrchestration runs a host of actor type typ of orchestration.js.
func startOrchestration(t *testing.T, b *devenv.Backend, name, typ string) *testenv.Proc {
	t.Helper()
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	p := testenv.Start(t, name, karEnv(b, "NODE_PATH="+nodeModules), filepath.Join(repo(t), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", "orch", "-actors", typ, "-h2c", "-app_port", strconv.Itoa(testenv.FreePort(t)), "-v", "info", "node", "orchestration.js")
	p.WaitOutput(t, "orchestration ready", 30*time.Second)
	return p
}

// TestRetryWaitsForEarlierCalls: Orch.run calls Worker.slow; Orch's host is
// killed (-9) while Worker.slow runs. The retry of Orch.run on the other
// host calls Worker.slow again only after the first Worker.slow has
// returned: two runs of the same logical call never overlap (without
// orchestration the retry's call, of the same session, entered the busy
// worker at once), and the caller gets its answer.
func TestRetryWaitsForEarlierCalls(t *testing.T) {
	b := testenv.Backend(t)
	worker := startOrchestration(t, b, "worker", "Worker")
	hosts := []*testenv.Proc{startOrchestration(t, b, "orch1", "Orch"), startOrchestration(t, b, "orch2", "Orch")}
	_, base := sidecarAlone(t, b, "orch")

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c := &http.Client{Timeout: 60 * time.Second}
		resp, err := c.Post(base+"/kar/v1/actor/Orch/o1/call/run", "application/kar+json", strings.NewReader("[3000]"))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var sb strings.Builder
		buf := make([]byte, 1024)
		n, _ := resp.Body.Read(buf)
		sb.Write(buf[:n])
		done <- result{code: resp.StatusCode, body: sb.String()}
	}()
	worker.WaitOutput(t, "worker start w1", 30*time.Second)
	var victim *testenv.Proc
	for _, h := range hosts {
		if strings.Contains(h.Output(), "orch run o1") {
			victim = h
		}
	}
	if victim == nil {
		t.Fatal("no host ran Orch/o1")
	}
	victim.Kill()

	r := <-done
	if r.err != nil || r.code != 200 || !strings.Contains(r.body, "done") {
		t.Fatalf("the call after its host died: %d %q %v", r.code, r.body, r.err)
	}
	// The worker's runs, in order: never two at once.
	active, starts := 0, 0
	sc := bufio.NewScanner(strings.NewReader(worker.Output()))
	for sc.Scan() {
		switch {
		case strings.Contains(sc.Text(), "[STDOUT] worker start w1"):
			active++
			starts++
			if active > 1 {
				t.Errorf("Worker.slow started again while its first run was still running (the retry did not wait for its earlier call)")
			}
		case strings.Contains(sc.Text(), "[STDOUT] worker end w1"):
			active--
		}
	}
	if starts < 2 {
		t.Errorf("Worker.slow ran %d times; the retry of Orch.run calls it again", starts)
	}
}
