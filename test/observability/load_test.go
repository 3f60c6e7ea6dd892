package observability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar"
)

// karCmd runs `kar ARGS...` against b and returns its stdout.
func karCmd(t *testing.T, b *devenv.Backend, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.KarBin(t), args...)
	cmd.Env = append(cmd.Environ(), b.Env()...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kar %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String()
}

// karGet runs `kar get -app app -s load ARGS...` and returns its stdout.
func karGet(t *testing.T, b *devenv.Backend, app string, args ...string) string {
	t.Helper()
	return karCmd(t, b, append([]string{"get", "-app", app, "-s", "load"}, args...)...)
}

// TestGetLoad: `kar get -s load` shows, from Redis and Kafka's offsets,
// a service with no member and M requests held for it, requests in flight
// at a service's component, and the records not yet finished.
func TestGetLoad(t *testing.T) {
	b := testenv.Backend(t)
	const app = "obsload"
	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	appPort := component(t, release)
	startSidecar(t, b, "server", "-app", app, "-service", "svc", "-actors", "Counter", "-app_port", strconv.Itoa(appPort))
	caller := startSidecar(t, b, "caller", "-app", app, "-missing_component_timeout", "0")
	waitMember(t, b, app, "svc", "Counter")

	const held, slow = 3, 2
	for range held {
		if s := call(t, caller, "POST", "/kar/v1/service/ghost/call/x", "async", "{}"); s != 202 {
			t.Fatalf("tell ghost: %d", s)
		}
	}
	for range slow {
		if s := call(t, caller, "POST", "/kar/v1/service/svc/call/slow", "async", "{}"); s != 202 {
			t.Fatalf("tell slow: %d", s)
		}
	}

	find := func(l *sidecar.MeshLoad, typ, name string) sidecar.TargetLoad {
		for _, tl := range l.Targets {
			if tl.Type == typ && tl.Name == name {
				return tl
			}
		}
		return sidecar.TargetLoad{Members: -1}
	}
	var l sidecar.MeshLoad
	testenv.Eventually(t, 15*time.Second, func() bool {
		l = sidecar.MeshLoad{}
		if err := json.Unmarshal([]byte(karGet(t, b, app, "-o", "json")), &l); err != nil {
			t.Fatalf("kar get -s load -o json: %v", err)
		}
		ghost, svc := find(&l, "service", "ghost"), find(&l, "service", "svc")
		return ghost.Members == 0 && ghost.Held == held && svc.Members == 1 && svc.InFlight == slow &&
			find(&l, "actor", "Counter").Members == 1 && l.KafkaError == "" && l.Unread >= held+slow
	}, "ghost: 0 members, %d held; svc: 1 member, %d in flight; %d+ records unfinished (last: %+v)", held, slow, held+slow, &l)

	text := karGet(t, b, app)
	t.Logf("kar get -s load:\n%s", text)
	for _, want := range []string{"TYPE", "ghost", "PARTITION", "unread or unfinished records:"} {
		if !strings.Contains(text, want) {
			t.Errorf("kar get -s load: no %q in\n%s", want, text)
		}
	}

	// Once the slow requests are answered, nothing is in flight.
	close(release)
	released = true
	testenv.Eventually(t, 15*time.Second, func() bool {
		l = sidecar.MeshLoad{}
		json.Unmarshal([]byte(karGet(t, b, app, "-o", "json")), &l)
		return find(&l, "service", "svc").InFlight == 0 && find(&l, "service", "ghost").Held == held
	}, "svc: nothing in flight once answered (last: %+v)", &l)
}

// karTop runs `kar top -app app ARGS...` and returns its stdout.
func karTop(t *testing.T, b *devenv.Backend, app string, args ...string) string {
	t.Helper()
	return karCmd(t, b, append([]string{"top", "-app", app}, args...)...)
}

// TestLoadRatesLatencyAndErrors: a known workload (20 calls the component
// takes 20 ms to answer, 6 it answers 500) shows in `kar get -s load -o
// json` as 26 answered, 6 errors and a p50 of about 20 ms; with calls
// going on, one `kar top -n 1 -o json` snapshot shows them per second;
// `kar top -n 2` shows two cleared views of the table.
func TestLoadRatesLatencyAndErrors(t *testing.T) {
	b := testenv.Backend(t)
	const app = "obstop"
	appPort := component(t, nil)
	startSidecar(t, b, "server", "-app", app, "-service", "svc", "-actors", "Counter", "-app_port", strconv.Itoa(appPort))
	caller := startSidecar(t, b, "caller", "-app", app)
	waitMember(t, b, app, "svc", "Counter")

	const waits, fails = 20, 6
	for range waits {
		if s := call(t, caller, "POST", "/kar/v1/service/svc/call/wait", "", "{}"); s != 200 {
			t.Fatalf("call wait: %d", s)
		}
	}
	for range fails {
		if s := call(t, caller, "POST", "/kar/v1/service/svc/call/fail", "", "{}"); s != 500 {
			t.Fatalf("call fail: %d", s)
		}
	}
	svcLoad := func(out string) sidecar.TargetLoad {
		var l sidecar.MeshLoad
		if err := json.Unmarshal([]byte(out), &l); err != nil {
			t.Fatalf("load JSON: %v\n%s", err, out)
		}
		for _, tl := range l.Targets {
			if tl.Type == "service" && tl.Name == "svc" {
				return tl
			}
		}
		return sidecar.TargetLoad{}
	}
	var svc sidecar.TargetLoad
	// The latencies stay ten seconds in the window: the check is early.
	testenv.Eventually(t, 8*time.Second, func() bool {
		svc = svcLoad(karGet(t, b, app, "-o", "json"))
		return svc.Answered == waits+fails && svc.Errors == fails && svc.P50Ms > 0
	}, "svc: %d answered, %d errors (last: %+v)", waits+fails, fails, &svc)
	// 20 of the 26 took 20 ms (buckets are within 25%); the 6 failures
	// were fast.
	if svc.P50Ms < 15 || svc.P50Ms > 200 || svc.P99Ms < svc.P50Ms || svc.P99Ms > 1000 {
		t.Errorf("svc latency: p50 %v ms, p99 %v ms; want p50 about 20 ms and p99 >= p50", svc.P50Ms, svc.P99Ms)
	}

	// Calls going on: requests per second show, the errors stay 6.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/kar/v1/service/svc/call/wait", caller), strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		}
	}()
	defer func() { close(stop); <-done }()
	testenv.Eventually(t, 15*time.Second, func() bool {
		out := karTop(t, b, app, "-n", "1", "-o", "json")
		if n := strings.Count(out, "\n"); n != 1 {
			t.Fatalf("kar top -n 1 -o json: %d lines, want 1:\n%s", n, out)
		}
		svc = svcLoad(out)
		return svc.PerSecond > 0 && svc.Answered > waits+fails && svc.Errors == fails && svc.ErrorsPerSecond == 0 && svc.P50Ms >= 15
	}, "kar top: svc answering calls of about 20 ms each second, no new errors (last: %+v)", &svc)

	text := karTop(t, b, app, "-n", "2")
	t.Logf("kar top -n 2:\n%s", text)
	if n := strings.Count(text, "\x1b[H\x1b[2J"); n != 2 {
		t.Errorf("kar top -n 2: %d screens cleared, want 2:\n%q", n, text)
	}
	for _, want := range []string{"kar top: application " + app, "REQ/S", "P99 MS", "ERRORS", "svc", "PARTITION"} {
		if !strings.Contains(text, want) {
			t.Errorf("kar top -n 2: no %q in\n%s", want, text)
		}
	}

	// Without -n it runs until Ctrl-C (SIGINT), then exits 0.
	cmd := exec.Command(testenv.KarBin(t), "top", "-app", app)
	cmd.Env = append(cmd.Environ(), b.Env()...)
	out := &syncBuffer{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			<-exited
		}
	}()
	testenv.Eventually(t, 15*time.Second, func() bool { return strings.Count(out.String(), "\x1b[H\x1b[2J") >= 2 }, "kar top: two views")
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		waited = true
		if err != nil {
			t.Errorf("kar top after Ctrl-C: %v, want exit 0", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("kar top still running 10 s after Ctrl-C")
	}
}

// syncBuffer is a strings.Builder a process writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
