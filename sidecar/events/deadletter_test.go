package events

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/testenv"
)

// actorHost is a component over HTTP: onEvent records {"n": i} in order,
// except the poison n, which it answers with 500, or with a dropped
// connection, or with 404 (the method is missing), every time.
type actorHost struct {
	mu       sync.Mutex
	got      []int
	attempts map[int]int
}

func (h *actorHost) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var args []struct{ N int }
	if err := json.NewDecoder(r.Body).Decode(&args); err != nil || len(args) != 1 {
		http.Error(w, "want [event]", 400)
		return
	}
	n := args[0].N
	h.mu.Lock()
	h.attempts[n]++
	h.mu.Unlock()
	switch {
	case n == 2 && strings.HasSuffix(r.URL.Path, "/fails"):
		http.Error(w, "boom: always fails", 500)
		return
	case n == 2 && strings.HasSuffix(r.URL.Path, "/drops"):
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close() // no answer at all
		}
		return
	case n == 2 && strings.HasSuffix(r.URL.Path, "/missing"):
		http.Error(w, "no such method", 404)
		return
	}
	h.mu.Lock()
	h.got = append(h.got, n)
	h.mu.Unlock()
	w.WriteHeader(204)
}

func (h *actorHost) snapshot() ([]int, map[int]int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	a := make(map[int]int, len(h.attempts))
	for k, v := range h.attempts {
		a[k] = v
	}
	return slices.Clone(h.got), a
}

// deliverHTTP calls the host as the sidecar's deliverEvent does: a 4xx is
// Rejected, any other failure an error to retry.
func deliverHTTP(url string) DeliverFunc {
	return func(ctx context.Context, typ, id, path, ct string, body []byte) error {
		req, err := http.NewRequestWithContext(ctx, "POST", url+"/"+typ+"/"+id+path, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", ct)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		switch {
		case resp.StatusCode < 300:
			return nil
		case resp.StatusCode < 500:
			return Rejected(fmt.Errorf("answered %d", resp.StatusCode))
		}
		return fmt.Errorf("answered %d", resp.StatusCode)
	}
}

// deadLetters reads the application's dead-letter topic with kcat: one
// line per record, its headers, a tab, its value.
func deadLetters(t *testing.T, w *world, kcat string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", w.b.KafkaBrokers(), "-t", kafka.DeadLetterTopic(testApp),
		"-o", "beginning", "-e", "-q", "-f", "%h\t%s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestPoisonEventDeadLettered: an event whose delivery always fails is
// attempted MaxAttempts times (a rejected one once), then lands in the
// application's dead-letter topic with the original record and kar_dead_*
// headers (read back with kcat), is logged at warn, and the subscription
// goes on with the next event: nothing else lost or reordered.
func TestPoisonEventDeadLettered(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not on PATH (Debian: apt-get install kcat)")
	}
	w := newWorld(t)
	host := &actorHost{attempts: map[int]int{}}
	hsrv := httptest.NewServer(host)
	t.Cleanup(hsrv.Close)
	const maxAttempts = 4
	s, logs := w.service(t, "sc1", deliverHTTP(hsrv.URL), func(o *Options) { o.MaxAttempts = maxAttempts })
	base := serve(t, s).URL
	cases := []struct {
		method   string
		attempts int
		says     string
	}{
		{"fails", maxAttempts, "answered 500"},
		{"drops", maxAttempts, "EOF"},
		{"missing", 1, "answered 404"}, // rejected: no retry helps
	}
	for _, tc := range cases {
		subscribe(t, base, tc.method, "s", `{"path":"/`+tc.method+`","topic":"poison-`+tc.method+`","contentType":"application/json"}`)
	}
	run(t, s)
	for _, tc := range cases {
		publishN(t, base, "poison-"+tc.method, 0, 5)
	}
	// Each subscription's events went to the one host: 0,1,3,4 three times.
	testenv.Eventually(t, 30*time.Second, func() bool { got, _ := host.snapshot(); return len(got) >= 12 }, "the events after the poison delivered")

	lines := deadLetters(t, w, kcat)
	if len(lines) != 3 {
		t.Fatalf("dead-letter topic holds %q, want 3 records", lines)
	}
	got, attempts := host.snapshot()
	for _, tc := range cases {
		t.Run(tc.method, func(t *testing.T) {
			var line string
			for _, l := range lines {
				if strings.Contains(l, "kar_dead_actor_id="+tc.method+",") {
					line = l
				}
			}
			for _, want := range []string{"ce_specversion=1.0", "content-type=application/json", "kar_wrapped=1",
				"kar_dead_subscription=s,", "kar_dead_actor_type=Sub,", "kar_dead_path=/" + tc.method + ",",
				"kar_dead_topic=poison-" + tc.method + ",", "kar_dead_partition=0,", "kar_dead_offset=2,",
				fmt.Sprintf("kar_dead_attempts=%d,", tc.attempts), "kar_dead_error=", tc.says, "\t{\"n\":2}"} {
				if !strings.Contains(line, want) {
					t.Errorf("dead letter %q lacks %q", line, want)
				}
			}
			if !strings.Contains(logs.String(), "level=WARN msg=\"events: event not delivered; sent it to the dead-letter topic") ||
				!strings.Contains(logs.String(), "actor=Sub/"+tc.method) {
				t.Errorf("no warning for the dead letter of %s", tc.method)
			}
		})
	}
	if attempts[2] != 2*maxAttempts+1 {
		t.Errorf("the poison event was attempted %d times, want %d", attempts[2], 2*maxAttempts+1)
	}
	slices.Sort(got)
	if want := []int{0, 0, 0, 1, 1, 1, 3, 3, 3, 4, 4, 4}; !slices.Equal(got, want) {
		t.Errorf("delivered %v, want %v", got, want)
	}
	for _, n := range []int{0, 1, 3, 4} {
		if attempts[n] != 3 {
			t.Errorf("event %d attempted %d times, want once per subscription", n, attempts[n])
		}
	}
}

// TestSinkGivesUpToDeadLetterTopic: a sink subscription without a dead
// letter sink is bounded too: a sink that always answers 503 gets
// MaxAttempts attempts, one that answers 400 one, then the event goes to
// the application's dead-letter topic (with the sink named) and the
// subscription goes on.
func TestSinkGivesUpToDeadLetterTopic(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not on PATH (Debian: apt-get install kcat)")
	}
	w := newWorld(t)
	const maxAttempts = 3
	down := &sinkServer{script: []int{503, 503, 503, 200}}
	bad := &sinkServer{script: []int{400, 200}}
	downSrv, badSrv := httptest.NewServer(down), httptest.NewServer(bad)
	t.Cleanup(downSrv.Close)
	t.Cleanup(badSrv.Close)
	s, _ := w.service(t, "sc1", nil, func(o *Options) {
		o.MaxAttempts = maxAttempts
		o.Deliver = func(context.Context, string, string, string, string, []byte) error { return nil }
	})
	base := serve(t, s).URL
	subscribe(t, base, "down", "s", `{"topic":"to-down","sink":"`+downSrv.URL+`"}`)
	subscribe(t, base, "bad", "s", `{"topic":"to-bad","sink":"`+badSrv.URL+`"}`)
	run(t, s)
	for _, topic := range []string{"to-down", "to-bad"} {
		publishN(t, base, topic, 0, 2)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		d, _ := down.snapshot()
		b, _ := bad.snapshot()
		return len(d) == maxAttempts+1 && len(b) == 2
	}, "both sinks get the next event")
	lines := deadLetters(t, w, kcat)
	if len(lines) != 2 {
		t.Fatalf("dead-letter topic holds %q, want 2 records", lines)
	}
	for _, want := range [][]string{
		{"kar_dead_actor_id=down,", "kar_dead_sink=" + downSrv.URL, fmt.Sprintf("kar_dead_attempts=%d,", maxAttempts), "status 503", "\t{\"n\":0}"},
		{"kar_dead_actor_id=bad,", "kar_dead_sink=" + badSrv.URL, "kar_dead_attempts=1,", "status 400", "\t{\"n\":0}"},
	} {
		found := false
		for _, l := range lines {
			if strings.Contains(l, want[0]) {
				found = true
				for _, w := range want[1:] {
					if !strings.Contains(l, w) {
						t.Errorf("dead letter %q lacks %q", l, w)
					}
				}
			}
		}
		if !found {
			t.Errorf("no dead letter with %s in %q", want[0], lines)
		}
	}
}
