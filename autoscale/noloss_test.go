package autoscale_test

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/autoscale/autoscaletest"
	"github.com/kar-runtime/kar/internal/testenv"
)

var long = flag.Bool("autoscale.long", false, "TestNoLossAcrossScaling with the default windows (30 s scale-down, 60 s cooldown): several minutes")

// recorder is a component that serves the service path /req/ID and the
// actor method hit(ID) of any actor type, and appends "s ID" or "a ID" to
// $IDS_FILE for every request it runs: every replica of both targets
// writes the same file (small O_APPEND writes do not interleave). Each
// request takes 5 ms, so that a burst keeps requests in flight in the
// components (the load the policy scales on).
const recorder = `const http = require('http'), fs = require('fs')
const ids = process.env.IDS_FILE
http.createServer((q, s) => {
  let body = ''
  q.on('data', c => { body += c })
  q.on('end', () => {
    if (q.url.startsWith('/kar/impl/v1/actor/')) {
      if (q.method === 'GET') { s.statusCode = 201; return s.end() }
      if (q.method !== 'POST') return s.end()
      const id = JSON.parse(body)[0]
      fs.appendFileSync(ids, 'a ' + id + '\n')
      s.setHeader('Content-Type', 'application/kar+json')
      return setTimeout(() => s.end(JSON.stringify({ value: id })), 5)
    }
    const id = q.url.split('?')[0].split('/').pop()
    fs.appendFileSync(ids, 's ' + id + '\n')
    setTimeout(() => s.end(id), 5)
  })
}).listen(+process.env.KAR_APP_PORT, '127.0.0.1')
`

// TestNoLossAcrossScaling: 10,000 requests, a third each synchronous
// service calls, asynchronous (Pragma: async) service calls and actor
// calls, through `kar autoscale` of the service and of the actor type
// (two processes scaling real kar run replicas of one node component):
// a burst from zero replicas at 64 in flight takes both to their maximum,
// a slow trickle lets them scale down while requests still flow, idle
// they return to zero, and a second burst comes from zero again. Every
// request is run by the components exactly once (each id is recorded
// once: none lost, none run twice) and every synchronous answer carries
// its own id. Short windows keep it under a minute; -autoscale.long runs
// it with the default windows.
func TestNoLossAcrossScaling(t *testing.T) {
	const (
		burst        = 4500 // requests of each burst at least, at 64 in flight
		trickle      = 1000
		svcMax, aMax = 3, 2
	)
	window, cooldown, poll := "1s", "2s", "100ms"
	if *long {
		window, cooldown, poll = autoscale.DefaultScaleDownWindow.String(), autoscale.DefaultCooldown.String(), autoscale.DefaultPoll.String()
	}
	b := testenv.Backend(t)
	const app = "noloss"
	dir := t.TempDir()
	script, idsFile := filepath.Join(dir, "recorder.js"), filepath.Join(dir, "ids")
	if err := os.WriteFile(script, []byte(recorder), 0o644); err != nil {
		t.Fatal(err)
	}
	env := append(b.Env(), "IDS_FILE="+idsFile)
	knobs := []string{"-target", "2", "-poll", poll, "-scale_down_window", window, "-cooldown", cooldown}
	var scalers []*testenv.Proc
	for _, target := range [][]string{{"-service", "worker", "-max", strconv.Itoa(svcMax)}, {"-actors", "Counter", "-max", strconv.Itoa(aMax)}} {
		args := append(append([]string{testenv.KarBin(t), "autoscale", "-app", app}, target...), knobs...)
		scalers = append(scalers, testenv.Start(t, "autoscale"+target[0], env, "", append(args, "--", "node", script)...))
	}
	caller := autoscaletest.Sidecar(t, b, "caller", "-app", app)
	src := autoscaletest.Source(t, b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	// The members of both targets, sampled every 50 ms until the end.
	var svcMembers, actorMembers atomic.Int64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for ctx.Err() == nil {
			if in, err := src.Read(ctx, autoscale.Target{App: app, Type: "service", Name: "worker"}); err == nil {
				svcMembers.Store(int64(in.Members))
			}
			if in, err := src.Read(ctx, autoscale.Target{App: app, Type: "actor", Name: "Counter"}); err == nil {
				actorMembers.Store(int64(in.Members))
			}
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() { cancel(); <-sampled }()

	client := &http.Client{Timeout: 3 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	base := fmt.Sprintf("http://127.0.0.1:%d/kar/v1", caller)
	var failures atomic.Int64
	send := func(id int) {
		var req *http.Request
		switch id % 3 {
		case 0, 1:
			req, _ = http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s/service/worker/call/req/%d", base, id), strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			if id%3 == 1 {
				req.Header.Set("Pragma", "async")
			}
		case 2:
			req, _ = http.NewRequestWithContext(ctx, "POST", fmt.Sprintf("%s/actor/Counter/c%d/call/hit", base, id%32), strings.NewReader(fmt.Sprintf("[%d]", id)))
			req.Header.Set("Content-Type", "application/kar+json")
		}
		resp, err := client.Do(req)
		if err != nil {
			if failures.Add(1) <= 5 {
				t.Errorf("request %d: %v", id, err)
			}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		want, wantStatus := strconv.Itoa(id), 200
		if id%3 == 1 {
			want, wantStatus = "", 202
		}
		if resp.StatusCode != wantStatus || !bytes.Contains(body, []byte(want)) {
			if failures.Add(1) <= 5 {
				t.Errorf("request %d: %d %q, want %d with its id", id, resp.StatusCode, body, wantStatus)
			}
		}
	}
	// run sends ids from `from` on, from workers goroutines, until `to`
	// or, once at least atLeast were sent, until enough (nil: never) says so;
	// every, when not 0, paces each worker. It returns the first id it
	// did not send: every id before it was sent.
	run := func(from, atLeast, to, workers int, every time.Duration, enough func() bool) int {
		var next atomic.Int64
		next.Store(int64(from))
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					if enough != nil && int(next.Load()) >= from+atLeast && enough() {
						return
					}
					id := int(next.Add(1) - 1)
					if id >= to {
						return
					}
					send(id)
					if every > 0 {
						time.Sleep(every) // pacing the load, not waiting for a condition
					}
				}
			}()
		}
		wg.Wait()
		return int(min(next.Load(), int64(to)))
	}
	if s, a := svcMembers.Load(), actorMembers.Load(); s != 0 || a != 0 {
		t.Fatalf("idle: %d service and %d actor replicas, want 0", s, a)
	}

	start := time.Now()
	// Burst from zero: both targets reach their maximum.
	var peakSvc, peakActor atomic.Int64
	peaks := func(stop <-chan struct{}) {
		for {
			peakSvc.Store(max(peakSvc.Load(), svcMembers.Load()))
			peakActor.Store(max(peakActor.Load(), actorMembers.Load()))
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	stop := make(chan struct{})
	go peaks(stop)
	begin := time.Now()
	// The requests must span a scale-up: the burst goes on until the
	// service has scaled up (a fixed count ended before it on a fast run:
	// 4,500 calls in 1.15 s). The actor type's second replica is not
	// waited for (on a quiet machine the service's burst can serve the
	// actors' calls with one); TestLocalScaleFromZeroAndBack holds calls
	// long enough to require the maximum.
	burstEnd := run(0, burst, 10*burst, 64, 0, func() bool { return peakSvc.Load() >= 2 })
	close(stop)
	t.Logf("burst 1 from zero: %d requests in %v, peak replicas: service %d, actor %d", burstEnd, time.Since(begin), peakSvc.Load(), peakActor.Load())
	if peakSvc.Load() < 2 {
		t.Errorf("burst: peak replicas service %d, actor %d; want the service scaled up (max %d, %d)", peakSvc.Load(), peakActor.Load(), svcMax, aMax)
	}

	// A trickle at 2 in flight (about 5 s) outlasts the scale-down window:
	// replicas stop while requests still flow.
	var lowSvc atomic.Int64
	lowSvc.Store(svcMax)
	stop = make(chan struct{})
	go func() {
		for {
			if s := svcMembers.Load(); s > 0 {
				lowSvc.Store(min(lowSvc.Load(), s))
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	begin = time.Now()
	var pace time.Duration
	if *long { // twice the window
		pace = 2 * autoscale.DefaultScaleDownWindow * 2 / trickle
	}
	trickleEnd := run(burstEnd, trickle, burstEnd+trickle, 2, pace, nil)
	close(stop)
	t.Logf("trickle: %d requests in %v, service replicas down to %d while it ran", trickle, time.Since(begin), lowSvc.Load())
	if lowSvc.Load() >= svcMax {
		t.Errorf("trickle: the service stayed at %d replicas, want a scale-down while requests flowed", lowSvc.Load())
	}

	// Idle: both return to zero after the cooldown.
	testenv.Eventually(t, 3*time.Minute, func() bool { return svcMembers.Load() == 0 && actorMembers.Load() == 0 },
		"both targets back to zero replicas")

	t.Logf("back to zero after %v", time.Since(start))
	// A second burst from zero.
	begin = time.Now()
	n := run(trickleEnd, burst, trickleEnd+burst, 64, 0, nil)
	t.Logf("burst 2 from zero: %d requests in %v", n-trickleEnd, time.Since(begin))

	// Every id run exactly once; the asynchronous ones may still be
	// running.
	counts := func() (map[int]int, int) {
		b, err := os.ReadFile(idsFile)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		c := map[int]int{}
		lines := 0
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			f := strings.Fields(l)
			if len(f) != 2 {
				continue
			}
			id, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatalf("ids file: %q", l)
			}
			if (f[0] == "a") != (id%3 == 2) {
				t.Errorf("id %d ran as %q", id, f[0])
			}
			c[id]++
			lines++
		}
		return c, lines
	}
	testenv.Eventually(t, 2*time.Minute, func() bool { c, _ := counts(); return len(c) == n }, "every one of %d requests run", n)
	t.Logf("all %d requests run after %v", n, time.Since(start))
	c, lines := counts()
	var twice []int
	for id, k := range c {
		if k > 1 {
			twice = append(twice, id)
		}
	}
	if len(twice) > 0 {
		// A replica stopped while its component ran requests had them
		// run again elsewhere: stopping must drain first (mesh.Drain).
		t.Errorf("%d runs of %d requests; run more than once: %d ids, e.g. %v", lines, n, len(twice), twice[:min(len(twice), 10)])
	}
	if f := failures.Load(); f > 0 {
		t.Errorf("%d requests failed", f)
	}

	for _, s := range scalers {
		if err := s.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range scalers {
		if code, err := s.Wait(60 * time.Second); err != nil || code != 0 {
			t.Errorf("kar autoscale after SIGTERM: exit %d, %v", code, err)
		}
	}
}
