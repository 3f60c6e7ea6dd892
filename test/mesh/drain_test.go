package mesh_test

import (
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

// startDrainHost runs a host of actor type Slow (drain.js) and returns it
// with its sidecar's REST address.
func startDrainHost(t *testing.T, b *devenv.Backend, name string) (*testenv.Proc, string) {
	t.Helper()
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	port := testenv.FreePort(t)
	p := testenv.Start(t, name, karEnv(b, "NODE_PATH="+nodeModules), filepath.Join(repo(t), "test", "mesh", "testdata"),
		testenv.KarBin(t), "run", "-app", "drain", "-actors", "Slow", "-h2c", "-runtime_port", strconv.Itoa(port),
		"-app_port", strconv.Itoa(testenv.FreePort(t)), "-v", "info", "node", "drain.js")
	p.WaitOutput(t, "drain ready", 30*time.Second)
	return p, "http://127.0.0.1:" + strconv.Itoa(port)
}

// TestShutdownDrainsActorHost: an actor host is told to shut down (POST
// /kar/v1/system/shutdown, as `kar autoscale` and a Pod's preStop hook do)
// while calls to its instances run and more keep coming. Its component is
// signalled only once it runs nothing, so every call runs exactly once:
// the calls queued for its instances run there first, the later ones on
// the other host. Before the drain, the component got SIGTERM after a
// fixed 2 s grace with calls running, and those ran a second time
// elsewhere.
func TestShutdownDrainsActorHost(t *testing.T) {
	b := testenv.Backend(t)
	h1, base1 := startDrainHost(t, b, "host1")
	h2, base2 := startDrainHost(t, b, "host2")
	_, base := sidecarAlone(t, b, "drain")

	const instances, perInstance = 8, 4
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	// The second call of each instance outlasts the 2 s a component had
	// before the drain: it is running when the host is told to stop.
	ms := func(j int) int {
		if j == 1 {
			return 3000
		}
		return 200
	}
	started := make(chan struct{})
	var once sync.Once
	for i := 0; i < instances; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < perInstance; j++ {
				tag := fmt.Sprintf("a%d-c%d", i, j)
				resp, body := do(t, http.MethodPost, fmt.Sprintf("%s/kar/v1/actor/Slow/a%d/call/work", base, i),
					http.Header{"Content-Type": {"application/kar+json"}}, fmt.Sprintf("[%d, %q]", ms(j), tag))
				if resp.StatusCode != 200 || !strings.Contains(body, tag) {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s: %d %s", tag, resp.StatusCode, body))
					mu.Unlock()
				}
				if j == 0 {
					once.Do(func() { close(started) })
				}
			}
		}()
	}
	<-started
	// Shut down a host while its second calls run.
	victim, victimBase, other := h1, base1, h2
	testenv.Eventually(t, 30*time.Second, func() bool {
		return strings.Contains(h1.Output(), "-c1\n") || strings.Contains(h2.Output(), "-c1\n")
	}, "no second call started")
	if !strings.Contains(h1.Output(), "-c1\n") {
		victim, victimBase, other = h2, base2, h1
	}
	resp, _ := do(t, http.MethodPost, victimBase+"/kar/v1/system/shutdown", nil, "")
	if resp.StatusCode/100 != 2 {
		t.Fatalf("shutdown: %d", resp.StatusCode)
	}
	wg.Wait()
	for _, f := range failures {
		t.Error("call failed:", f)
	}
	victim.WaitOutput(t, "sigterm running=", 30*time.Second)
	if _, err := victim.Wait(30 * time.Second); err != nil {
		t.Errorf("the stopped host did not exit: %v", err)
	}
	if strings.Contains(victim.Output(), "panic:") {
		t.Errorf("the stopped host's sidecar panicked")
	}
	if m := regexp.MustCompile(`sigterm running=(\d+)`).FindStringSubmatch(victim.Output()); m == nil || m[1] != "0" {
		t.Errorf("the stopping host's component was signalled while running calls: %v", m)
	}
	runs := map[string]int{}
	for _, out := range []string{victim.Output(), other.Output()} {
		for _, m := range regexp.MustCompile(`\[STDOUT\] start (\S+)`).FindAllStringSubmatch(out, -1) {
			runs[m[1]]++
		}
	}
	for i := 0; i < instances; i++ {
		for j := 0; j < perInstance; j++ {
			if tag := fmt.Sprintf("a%d-c%d", i, j); runs[tag] != 1 {
				t.Errorf("%s ran %d times", tag, runs[tag])
			}
		}
	}
	if !strings.Contains(other.Output(), "[STDOUT] start") || !strings.Contains(victim.Output(), "[STDOUT] start") {
		t.Errorf("expected both hosts to run calls")
	}
}
