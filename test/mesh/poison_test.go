package mesh_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestPoisonRequestBounded: a request whose handler drops the connection
// without an answer is delivered -delivery_attempts times, then its caller
// gets a 500 saying what happened; an actor instance is free again for
// other callers at once (it was held for ever, the request redelivered
// for ever).
func TestPoisonRequestBounded(t *testing.T) {
	b := testenv.Backend(t)
	port := testenv.FreePort(t)
	srv := testenv.Start(t, "poison", karEnv(b), "testdata", testenv.KarBin(t), "run", "-app", "poison",
		"-service", "svc", "-actors", "Poison", "-app_port", strconv.Itoa(port), "-delivery_attempts", "3", "-v", "warn", "node", "poison.js")
	srv.WaitOutput(t, "poison ready", 20*time.Second)
	waitServes(t, b, "poison", "svc", 1)
	_, base := sidecarAlone(t, b, "poison")
	c := &http.Client{Timeout: 60 * time.Second}
	for _, tc := range []struct{ name, url, body string }{
		{"service", base + "/kar/v1/service/svc/call/poison", "x"},
		{"actor", base + "/kar/v1/actor/Poison/p1/call/poison", "[]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Post(tc.url, "application/json", strings.NewReader(tc.body))
			if err != nil {
				t.Fatalf("the call did not end: %v", err)
			}
			var msg strings.Builder
			buf := make([]byte, 4096)
			n, _ := resp.Body.Read(buf)
			msg.Write(buf[:n])
			resp.Body.Close()
			if resp.StatusCode != 500 || !strings.Contains(msg.String(), "failed 3 times") {
				t.Errorf("got %d %q, want 500 saying the component failed 3 times", resp.StatusCode, msg.String())
			}
		})
	}
	// The instance is free: another method of the same instance runs.
	resp, err := c.Post(base+"/kar/v1/actor/Poison/p1/call/ok", "application/json", strings.NewReader("[]"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("a call after the poison: %v %v", resp, err)
	}
	resp.Body.Close()
	// The bounded number of deliveries, none later. The app client tries
	// a request once more on a fresh connection when a kept-alive one fails
	// before any answer (it may have been closed while idle), so one
	// delivery may reach the component twice.
	counts := func() map[string]int {
		r, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/counts")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		m := map[string]int{}
		json.NewDecoder(r.Body).Decode(&m)
		return m
	}
	got := counts()
	for _, k := range []string{"POST /poison", "POST /kar/impl/v1/actor/Poison/p1/poison"} {
		if got[k] < 3 || got[k] > 4 {
			t.Errorf("%s delivered %d times, want 3 (4 with a reconnect) (all: %v)", k, got[k], got)
		}
	}
	srv.WaitOutput(t, "giving up on a request", 5*time.Second)
}

// TestRequestThatKillsItsHostsBounded: a request whose handler takes the
// component's process (and so its sidecar) down is redelivered to the next
// replica each time; after -delivery_attempts runs on hosts that died, the
// caller gets a 500 instead of every replica dying in turn for ever.
func TestRequestThatKillsItsHostsBounded(t *testing.T) {
	b := testenv.Backend(t)
	crashLog := filepath.Join(t.TempDir(), "crashes")
	for i := 0; i < 3; i++ {
		p := testenv.Start(t, "crash"+strconv.Itoa(i), karEnv(b, "CRASH_LOG="+crashLog), "testdata", testenv.KarBin(t), "run", "-app", "crash",
			"-service", "svc", "-app_port", strconv.Itoa(testenv.FreePort(t)), "-delivery_attempts", "1", "-v", "info", "node", "crash.js")
		p.WaitOutput(t, "crash ready", 20*time.Second)
	}
	waitServes(t, b, "crash", "svc", 3)
	_, base := sidecarAlone(t, b, "crash", "-delivery_attempts", "1")
	c := &http.Client{Timeout: 60 * time.Second}
	resp, err := c.Post(base+"/kar/v1/service/svc/call/crash", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatalf("the call did not end: %v", err)
	}
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	resp.Body.Close()
	if resp.StatusCode != 500 || !strings.Contains(string(buf[:n]), "gave up") {
		t.Errorf("got %d %q, want 500 saying kar gave up", resp.StatusCode, buf[:n])
	}
	runs, err := os.ReadFile(crashLog)
	if err != nil {
		t.Fatal(err)
	}
	if crashed := strings.Count(string(runs), "crashing on /crash"); crashed != 2 {
		t.Errorf("%d replicas ran the request, want 2 (the first run and one redelivery)", crashed)
	}
}
