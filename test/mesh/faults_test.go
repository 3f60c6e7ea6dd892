package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestMissingComponentThenJoin: a call to a service with no component
// waits, persisted, until one joins; with a short
// -missing_component_timeout it ends in a clear error instead.
func TestMissingComponentThenJoin(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	_, base := sidecarAlone(t, b, "late")

	type result struct {
		status int
		body   string
	}
	sync1 := make(chan result, 1)
	go func() {
		resp, err := http.Post(base+"/kar/v1/service/greeter/call/helloJson", "application/json", strings.NewReader(`{"name":"Sync"}`))
		if err != nil {
			sync1 <- result{0, err.Error()}
			return
		}
		var sb strings.Builder
		fmt.Fprint(&sb, readAll(resp))
		sync1 <- result{resp.StatusCode, sb.String()}
	}()
	// An async request accepted before any component exists is delivered too.
	resp, got := do(t, "POST", base+"/kar/v1/service/greeter/call/helloJson", http.Header{"Content-Type": {"application/json"}, "Pragma": {"async"}}, `{"name":"Early"}`)
	if resp.StatusCode != 202 {
		t.Fatalf("async before join: %d %s", resp.StatusCode, got)
	}
	select {
	case r := <-sync1:
		t.Fatalf("call answered before any component joined: %+v", r)
	default:
	}

	server, _ := startService(t, b, "server", "late", "greeter", dir, "node", "server.js")
	select {
	case r := <-sync1:
		if r.status != 200 || r.body != `{"greetings":"Hello Sync!"}` {
			t.Fatalf("held call: %d %s", r.status, r.body)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("held call not answered 30s after the component joined")
	}
	server.WaitOutput(t, "[STDOUT] Hello Early!", 20*time.Second)

	// With a short timeout: a clear error.
	_, errOut, code := rest(t, b, "-app", "late", "-o", "json", "-missing_component_timeout", "500ms", "post", "nobody", "x", "{}")
	if code != 1 || !strings.Contains(errOut, "no component for service nobody") || !strings.Contains(errOut, "408") { // as KAR
		t.Errorf("missing component: exit %d, stderr %q", code, errOut)
	}
}

func readAll(resp *http.Response) string {
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			return sb.String()
		}
	}
}

// slowCalls sends n concurrent calls to greeter/slow and collects which
// component PIDs answered them.
func slowCalls(t *testing.T, base string, n, ms int) (chan map[string]any, *sync.WaitGroup) {
	out := make(chan map[string]any, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := http.Post(fmt.Sprintf("%s/kar/v1/service/greeter/call/slow?ms=%d", base, ms), "application/json", strings.NewReader(fmt.Sprintf(`{"n":%d}`, i)))
			if err != nil {
				out <- map[string]any{"error": err.Error()}
				return
			}
			body := readAll(resp)
			var m map[string]any
			if resp.StatusCode != 200 || json.Unmarshal([]byte(body), &m) != nil {
				m = map[string]any{"error": fmt.Sprintf("%d %s", resp.StatusCode, body)}
			}
			out <- m
		}(i)
	}
	return out, &wg
}

// childPID is the component that `kar run` (pid) launched.
func childPID(t *testing.T, pid int) int {
	t.Helper()
	var child int
	testenv.Eventually(t, 10*time.Second, func() bool {
		out, _ := exec.Command("pgrep", "-P", strconv.Itoa(pid)).Output()
		f := strings.Fields(string(out))
		if len(f) == 0 {
			return false
		}
		child, _ = strconv.Atoi(f[0])
		return child > 0
	}, "a child of pid %d", pid)
	return child
}

// TestKillReplicaMidCall kills -9, in the middle of calls, first a
// component and then a whole replica (component and sidecar): every
// accepted call completes on the surviving replica.
func TestKillReplicaMidCall(t *testing.T) {
	for _, what := range []string{"component", "sidecar"} {
		t.Run(what, func(t *testing.T) {
			b := testenv.Backend(t)
			dir := needNodeExample(t, "service-hello-js")
			app := "kill-" + what
			victim, _ := startService(t, b, "victim", app, "greeter", dir, "node", "server.js")
			victimPID := childPID(t, victim.PID())
			_, _ = startService(t, b, "survivor", app, "greeter", dir, "node", "server.js")
			waitServes(t, b, app, "greeter", 2)
			_, base := sidecarAlone(t, b, app)

			const n = 16
			results, wg := slowCalls(t, base, n, 1500)
			// Wait until the victim holds some calls, then kill it.
			testenv.Eventually(t, 10*time.Second, func() bool { return inflight(t, victimPID) }, "victim has calls in flight")
			if what == "component" {
				syscall.Kill(victimPID, syscall.SIGKILL)
			} else {
				victim.Kill()
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Fatal("calls still unanswered 60s after the kill")
			}
			close(results)
			answered := 0
			for r := range results {
				if r["error"] != nil {
					t.Errorf("call failed: %v", r["error"])
					continue
				}
				answered++
				if int(r["pid"].(float64)) == victimPID {
					t.Errorf("answered by the killed component")
				}
			}
			if answered != n {
				t.Errorf("%d of %d calls answered", answered, n)
			}
		})
	}
}

// inflight tells whether process pid has an established TCP connection
// carrying a request: approximated by the node process having received one
// (its sidecar connected to it).
func inflight(t *testing.T, pid int) bool {
	out, _ := exec.Command("ss", "-tnp", "state", "established").Output()
	return strings.Contains(string(out), "pid="+strconv.Itoa(pid)+",")
}

// TestCallerDies: a caller killed while its calls run leaves nothing stuck:
// the service keeps serving others.
func TestCallerDies(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	server, _ := startService(t, b, "server", "caller", "greeter", dir, "node", "server.js")
	serverPID := childPID(t, server.PID())
	caller, base := sidecarAlone(t, b, "caller")
	results, _ := slowCalls(t, base, 4, 1000)
	testenv.Eventually(t, 10*time.Second, func() bool { return inflight(t, serverPID) }, "calls reach the server")
	caller.Kill()
	for i := 0; i < 4; i++ {
		<-results
	}
	out, errOut, code := rest(t, b, "-app", "caller", "post", "greeter", "helloJson", `{"name":"After"}`)
	if code != 0 || !strings.Contains(out, "Hello After!") {
		t.Fatalf("after the caller died: exit %d %q %q", code, out, errOut)
	}
}

// TestBackendRestarts: Redis killed (-9) and restarted, then Kafka stopped
// and restarted, while async calls flow: every call the mesh accepted
// (202) is delivered, and calls work again afterwards.
func TestBackendRestarts(t *testing.T) {
	b := testenv.Backend(t, testenv.DataDir(t.TempDir()))
	dir := needNodeExample(t, "service-hello-js")
	server, _ := startService(t, b, "server", "restarts", "greeter", dir, "node", "server.js")
	_, base := sidecarAlone(t, b, "restarts")

	var accepted []string
	n := 0
	tell := func() {
		n++
		name := fmt.Sprintf("n%d", n)
		req, _ := http.NewRequest("POST", base+"/kar/v1/service/greeter/call/helloText", strings.NewReader(name))
		req.Header.Set("Content-Type", "text/plain")
		req.Header.Set("Pragma", "async")
		c := &http.Client{Timeout: 20 * time.Second}
		resp, err := c.Do(req)
		if err != nil {
			return
		}
		resp.Body.Close()
		if resp.StatusCode == 202 {
			accepted = append(accepted, name)
		}
	}
	for i := 0; i < 10; i++ {
		tell()
	}
	if err := b.StopRedis(true); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		tell()
	}
	if err := b.StartRedis(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		tell()
	}
	b.StopKafka()
	for i := 0; i < 3; i++ {
		tell()
	}
	if err := b.StartKafka(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		resp, err := http.Post(base+"/kar/v1/service/greeter/call/helloText", "text/plain", strings.NewReader("after"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "sync calls work after the restarts")
	for i := 0; i < 10; i++ {
		tell()
	}
	if len(accepted) < 30 {
		t.Errorf("only %d of %d calls accepted", len(accepted), n)
	}
	testenv.Eventually(t, 60*time.Second, func() bool {
		out := server.Output()
		for _, name := range accepted {
			if !strings.Contains(out, "[STDOUT] Hello "+name+"!") {
				return false
			}
		}
		return true
	}, "every accepted call delivered")
}
