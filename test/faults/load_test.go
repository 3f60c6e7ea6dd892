package faults_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// kind is one way of calling through the REST API.
type kind string

const (
	kindSync       kind = "sync"        // POST service call, waits for the answer
	kindAsync      kind = "async"       // Pragma: async, 202
	kindPromise    kind = "promise"     // Pragma: promise, then POST /await
	kindActor      kind = "actor"       // actor method call, waits for the answer
	kindActorAsync kind = "actor-async" // actor method, Pragma: async
)

var allKinds = []kind{kindSync, kindAsync, kindPromise, kindActor, kindActorAsync}

// actorInstances is how many Worker instances the load spreads over: more
// than the hosts, so that every host holds some.
const actorInstances = 16

// loadOptions shape a load.
type loadOptions struct {
	// Rate is calls started per second, InFlight the most at once.
	Rate     int
	InFlight int
	// MS is how long the component works on each request.
	MS int
	// Timeout is the client's timeout per call (promise and await
	// together): a call still unanswered then has hung.
	Timeout time.Duration
	// Prefix starts every request id.
	Prefix string
	Kinds  []kind
}

// result is the outcome of one call.
type result struct {
	id       string
	kind     kind
	accepted bool // 2xx: the mesh took the request
	answered bool // the answer came back, naming the request
	hung     bool // the client's timeout ended it
	err      string
	start    time.Time // when the call was made
	at       time.Time // when the call was accepted (or ended)
}

// load sends calls through a caller sidecar's REST API and records every
// request id's fate.
type load struct {
	base   string
	opts   loadOptions
	client *http.Client

	mu      sync.Mutex
	seq     int
	results []result

	stop chan struct{}
	wg   sync.WaitGroup
}

func newLoad(base string, o loadOptions) *load {
	if len(o.Kinds) == 0 {
		o.Kinds = allKinds
	}
	if o.Prefix == "" {
		o.Prefix = "r"
	}
	// One connection per call in flight, kept open: a loaded machine
	// should spend its CPU on the mesh, not on TCP handshakes.
	tr := &http.Transport{MaxIdleConnsPerHost: max(o.InFlight, 8), MaxConnsPerHost: 0}
	return &load{base: base, opts: o, client: &http.Client{Transport: tr}, stop: make(chan struct{})}
}

// start runs the load until Stop: InFlight workers take one tick each of
// a Rate per second ticker (ticks nobody takes are dropped, so a stalled
// mesh is not flooded when it comes back).
func (l *load) start() {
	ticks := make(chan struct{})
	go func() {
		t := time.NewTicker(time.Second / time.Duration(l.opts.Rate))
		defer t.Stop()
		for {
			select {
			case <-l.stop:
				close(ticks)
				return
			case <-t.C:
				select {
				case ticks <- struct{}{}:
				default:
				}
			}
		}
	}()
	for range l.opts.InFlight {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range ticks {
				l.record(l.call(context.Background(), l.next()))
			}
		}()
	}
}

// Stop ends the load and waits for the calls in flight (each bounded by
// the timeout).
func (l *load) Stop() {
	close(l.stop)
	l.wg.Wait()
}

func (l *load) next() kind {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.opts.Kinds[len(l.results)%len(l.opts.Kinds)]
}

func (l *load) record(r result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.results = append(l.results, r)
}

// answeredCount is how many calls were answered (or, for async, accepted).
func (l *load) answeredCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.results {
		if r.answered || r.accepted && (r.kind == kindAsync || r.kind == kindActorAsync) {
			n++
		}
	}
	return n
}

func (l *load) newID(k kind) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.seq++
	return fmt.Sprintf("%s-%s-%d", l.opts.Prefix, k, l.seq)
}

// call makes one call of kind k and reports its fate.
func (l *load) call(ctx context.Context, k kind) (r result) {
	id := l.newID(k)
	r = result{id: id, kind: k, start: time.Now()}
	ctx, cancel := context.WithTimeout(ctx, l.opts.Timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]any{"id": id, "ms": l.opts.MS})
	var url, ctype, pragma string
	switch k {
	case kindSync, kindAsync, kindPromise:
		url, ctype = l.base+"/kar/v1/service/work/call/work", "application/json"
	default:
		// Instances by id, so each id's calls are spread over them.
		url = fmt.Sprintf("%s/kar/v1/actor/Worker/w%d/call/work", l.base, hash(id)%actorInstances)
		ctype, body = "application/kar+json", []byte("["+string(body)+"]")
	}
	switch k {
	case kindAsync, kindActorAsync:
		pragma = "async"
	case kindPromise:
		pragma = "promise"
	}
	status, answer, err := l.post(ctx, url, ctype, pragma, body)
	// r is the named result: the deferred stamp reaches the caller.
	defer func() { r.at = time.Now() }()
	if err != nil {
		r.hung, r.err = errors.Is(err, context.DeadlineExceeded), err.Error()
		return r
	}
	if status/100 != 2 {
		r.err = fmt.Sprintf("%d %s", status, strings.TrimSpace(answer))
		return r
	}
	r.accepted = true
	switch k {
	case kindAsync, kindActorAsync:
		return r
	case kindPromise:
		// The promise's answer is its request id; await it.
		status, answer, err = l.post(ctx, l.base+"/kar/v1/await", "text/plain", "", []byte(answer))
		if err != nil {
			r.hung, r.err = errors.Is(err, context.DeadlineExceeded), "await: "+err.Error()
			return r
		}
		if status != 200 {
			r.err = fmt.Sprintf("await: %d %s", status, strings.TrimSpace(answer))
			return r
		}
	}
	if !strings.Contains(answer, `"`+id+`"`) {
		r.err = fmt.Sprintf("answer %q does not name the request", answer)
		return r
	}
	r.answered = true
	return r
}

func (l *load) post(ctx context.Context, url, ctype, pragma string, body []byte) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", ctype)
	if pragma != "" {
		req.Header.Set("Pragma", pragma)
	}
	resp, err := l.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		if ctx.Err() != nil {
			return 0, "", fmt.Errorf("%w: %w", ctx.Err(), err)
		}
		return 0, "", err
	}
	return resp.StatusCode, string(b), nil
}

func hash(s string) int {
	h := 0
	for _, c := range s {
		h = h*31 + int(c)
	}
	if h < 0 {
		h = -h
	}
	return h
}

// clock is how times are shown, as in the sidecars' logs.
const clock = "15:04:05.000"

// figures are a scenario's outcome.
type figures struct {
	Sent, Accepted, Answered, Refused, Hung, Lost, Duplicated, Wrong int
	// Recovery is how long after the fault new calls of every kind
	// worked; Slowest the longest an answered call took.
	Recovery, Slowest time.Duration
}

func (f figures) String() string {
	return fmt.Sprintf("sent %d, accepted %d, answered %d, refused %d, hung %d, lost %d, duplicated %d, wrong answers %d, recovery %s, slowest answer %s",
		f.Sent, f.Accepted, f.Answered, f.Refused, f.Hung, f.Lost, f.Duplicated, f.Wrong, f.Recovery.Round(time.Millisecond), f.Slowest.Round(time.Millisecond))
}

// verdict waits up to deadline for every accepted request (of those mustRun
// selects) to have been executed, then counts the figures. lost lists the
// accepted ids never executed, by kind; hung the calls that hung.
func (l *load) verdict(t *testing.T, c *cluster, deadline time.Duration, mustRun func(result) bool) (f figures, lost, hung []string) {
	t.Helper()
	l.mu.Lock()
	results := append([]result(nil), l.results...)
	l.mu.Unlock()
	var exec map[string]int
	end := time.Now().Add(deadline)
	for {
		exec = c.executions()
		lost = lost[:0]
		for _, r := range results {
			if r.accepted && exec[r.id] == 0 && mustRun(r) {
				lost = append(lost, string(r.kind)+" "+r.id)
			}
		}
		if len(lost) == 0 || time.Now().After(end) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	f.Sent = len(results)
	for _, r := range results {
		switch {
		case r.hung:
			f.Hung++
			// Executed or not tells a lost answer from a lost request.
			hung = append(hung, fmt.Sprintf("%s %s (made %s, executed %d×; %s)", r.kind, r.id, r.start.Format(clock), exec[r.id], r.err))
		case r.accepted && r.err != "":
			f.Wrong++
			t.Errorf("%s %s: %s", r.kind, r.id, r.err)
		case !r.accepted:
			f.Refused++
		}
		if r.accepted {
			f.Accepted++
		}
		if r.answered {
			f.Answered++
			f.Slowest = max(f.Slowest, r.at.Sub(r.start))
		}
		if exec[r.id] > 1 {
			f.Duplicated += exec[r.id] - 1
		}
	}
	f.Lost = len(lost)
	sort.Strings(lost)
	return f, lost, hung
}

// refusals summarizes why calls were refused, most frequent first.
func (l *load) refusals() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	count := map[string]int{}
	for _, r := range l.results {
		if !r.accepted && !r.hung {
			msg := r.err
			if len(msg) > 120 {
				msg = msg[:120]
			}
			count[msg]++
		}
	}
	msgs := make([]string, 0, len(count))
	for msg := range count {
		msgs = append(msgs, msg)
	}
	sort.Slice(msgs, func(i, j int) bool { return count[msgs[i]] > count[msgs[j]] })
	out := make([]string, len(msgs))
	for i, msg := range msgs {
		out[i] = fmt.Sprintf("%d× %s", count[msg], msg)
	}
	return strings.Join(out, "; ")
}

// duplicates says which requests ran more than once: by kind, by when
// their call ended against the fault's window, and whether the same
// component ran them again or another one did (a partition read again by
// its reader, or by an adopter), to tell where they come from.
func (l *load) duplicates(byComponent map[string]map[string]int, begin, end time.Time) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	byKind := map[kind]int{}
	var before, during, after, same, other int
	var ids []string
	for _, r := range l.results {
		total, comps := 0, 0
		for _, byID := range byComponent {
			if n := byID[r.id]; n > 0 {
				total += n
				comps++
				same += n - 1
			}
		}
		n := total - 1
		if n <= 0 {
			continue
		}
		other += comps - 1
		byKind[r.kind] += n
		switch {
		case r.at.Before(begin):
			before += n
		case r.at.Before(end):
			during += n
		default:
			after += n
		}
		if len(ids) < 5 {
			ids = append(ids, fmt.Sprintf("%s ×%d", r.id, n+1))
		}
	}
	var kinds []string
	for _, k := range allKinds {
		if byKind[k] > 0 {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, byKind[k]))
		}
	}
	return fmt.Sprintf("%s; calls ended before the fault %d, during %d, after %d; run again by the same component %d, by another %d; e.g. %s",
		strings.Join(kinds, ", "), before, during, after, same, other, strings.Join(ids, ", "))
}
