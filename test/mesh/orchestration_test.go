package mesh_test

import (
	"bufio"
	"io"
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

	done := make(chan result, 1)
	go func() { done <- post(base+"/kar/v1/actor/Orch/o1/call/run", "[3000]") }()
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

// TestRetryNotHeldByCallNeverSent: Orch.runLater's host is cut from Kafka
// before it makes its nested call, and killed (-9) while its sidecar still
// tries to send that call: the call never reaches Kafka. The retry of
// Orch.runLater on the other host must not wait for the answer to a call
// nobody received (retry orchestration waits for the calls of the earlier
// run that were sent); the caller gets its answer.
func TestRetryNotHeldByCallNeverSent(t *testing.T) {
	b := testenv.Backend(t)
	startOrchestration(t, b, "worker", "Worker")
	proxy := testenv.StartKafkaProxy(t, b.KafkaBrokers())
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	victim := testenv.Start(t, "orch-cut", karEnv(b, "NODE_PATH="+nodeModules, "KAFKA_BROKERS="+proxy.Addr()), filepath.Join(repo(t), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", "orch", "-actors", "Orch", "-h2c", "-app_port", strconv.Itoa(testenv.FreePort(t)), "-v", "info", "node", "orchestration.js")
	victim.WaitOutput(t, "orchestration ready", 30*time.Second)
	_, base := sidecarAlone(t, b, "orch")
	// The instance goes to the victim: it is the only host of Orch yet.
	done := make(chan result, 1)
	go func() { done <- post(base+"/kar/v1/actor/Orch/o2/call/runLater", "[1500, 10]") }()
	victim.WaitOutput(t, "orch runLater o2", 30*time.Second)
	proxy.Cut()
	victim.WaitOutput(t, "orch calls o2", 10*time.Second)
	victim.WaitOutput(t, "cannot send request", 20*time.Second)
	victim.Kill()
	proxy.Restore()
	startOrchestration(t, b, "orch2", "Orch")

	r := <-done
	if r.err != nil || r.code != 200 || !strings.Contains(r.body, "done") {
		t.Fatalf("the call after its host died: %d %q %v", r.code, r.body, r.err)
	}
}

type result struct {
	code int
	body string
	err  error
}

// post posts an actor call's arguments, bounded by 60 s.
func post(url, args string) result {
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Post(url, "application/kar+json", strings.NewReader(args))
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return result{code: resp.StatusCode, body: string(b), err: err}
}
