package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// SidecarsOptions configure the sidecars benchmark.
type SidecarsOptions struct {
	Sizes []int         // member counts at which figures are taken, ascending
	Batch int           // members started at once, as a deployment scaling up does
	Idle  time.Duration // window of the idle-cost figure
}

// SidecarsPoint is the figures at one member count.
type SidecarsPoint struct {
	Members int
	// Memory of each sidecar (kar run) and of each component, MiB: median and max.
	SidecarRSS, SidecarRSSMax, SidecarPSS, ComponentRSS float64
	// JoinP50 and JoinMax: kar run → visible to the others with its
	// service, for the members started (in batches) since the last point.
	JoinP50, JoinMax time.Duration
	// NthJoin: one more member started alone → the first request to its
	// service (sent before it started, held until it joined) answered.
	NthJoin time.Duration
	// Stall: the steady call stream to another member while members
	// joined: its worst and p99 call, and its p99 at rest before.
	StallWorst, StallP99, RestP99 time.Duration
	// SingleStallWorst: the stream's worst call while the last member
	// joined alone.
	SingleStallWorst time.Duration
	// Connections per sidecar (median), from /proc, and Redis's count
	// of clients (CLIENT LIST) divided by the sidecars.
	RedisConns, KafkaConns int
	RedisClientsPerSidecar float64
	// Idle: the mesh with no calls for a window.
	Idle              Delta
	IdleSidecarsCPU   float64 // cores, all sidecars and components together
	IdleBrokerProcCPU float64 // cores, this process (the broker and the benchmark's pollers)
}

// Sidecars starts members of one application, in batches, up to each size
// in turn, and takes the figures at each size.
func Sidecars(ctx context.Context, e *Env, o SidecarsOptions) ([]SidecarsPoint, error) {
	caller, err := e.StartSidecar(nil, false)
	if err != nil {
		return nil, err
	}
	if err := e.WaitHealthy(ctx, caller, 60*time.Second); err != nil {
		return nil, err
	}
	steady, err := e.StartSidecar([]string{"-service", "steady"}, true)
	if err != nil {
		return nil, err
	}
	steadyURL := caller.URL() + "/kar/v1/service/steady/call/x"
	if err := waitCall(e, steadyURL, `{}`, 60*time.Second); err != nil {
		return nil, err
	}
	members := []*Proc{steady}
	stream := startStream(e, steadyURL)
	defer stream.stop()

	var points []SidecarsPoint
	for _, size := range o.Sizes {
		pt := SidecarsPoint{Members: size}
		pt.RestP99 = stream.window(time.Second).p99
		// Start members in batches until one short of size; the last
		// one joins alone (NthJoin).
		stream.mark()
		var joins []time.Duration
		for len(members) < size-1 {
			n := min(o.Batch, size-1-len(members))
			batch := make([]*Proc, 0, n)
			for i := 0; i < n; i++ {
				p, err := e.StartSidecar([]string{"-service", "idle"}, true)
				if err != nil {
					return points, err
				}
				batch = append(batch, p)
			}
			js, err := waitVisible(ctx, e, caller, batch, 120*time.Second)
			if err != nil {
				return points, err
			}
			joins = append(joins, js...)
			members = append(members, batch...)
		}
		st := stream.sinceMark()
		pt.StallWorst, pt.StallP99 = st.worst, st.p99
		if len(members) < size {
			stream.mark()
			p, d, err := nthJoin(e, caller, size)
			if err != nil {
				return points, err
			}
			pt.NthJoin = d
			members = append(members, p)
			pt.SingleStallWorst = stream.sinceMark().worst
		}
		if len(joins) > 0 {
			slices.Sort(joins)
			pt.JoinP50, pt.JoinMax = joins[len(joins)/2], joins[len(joins)-1]
		}
		// Let the joins settle (the others' view refreshes, the
		// newcomers' first load publications) before the idle window.
		stream.pause()
		time.Sleep(min(3*time.Second, o.Idle))
		if err := idleCost(ctx, e, append([]*Proc{caller}, members...), o.Idle, &pt); err != nil {
			return points, err
		}
		stream.resume()
		memoryAndConns(ctx, e, members, &pt)
		points = append(points, pt)
	}
	return points, nil
}

// nthJoin starts the size-th member alone, serving a service of its own,
// and times kar run → its first request answered; the request is sent
// first and held by the caller until the member joins.
func nthJoin(e *Env, caller *Proc, size int) (*Proc, time.Duration, error) {
	svc := "probe" + strconv.Itoa(size)
	done := make(chan error, 1)
	go func() {
		_, err := e.Do(http.MethodPost, caller.URL()+"/kar/v1/service/"+svc+"/call/x", "application/json", `{}`)
		done <- err
	}()
	time.Sleep(100 * time.Millisecond) // the call is held before the member starts
	p, err := e.StartSidecar([]string{"-service", svc}, true)
	if err != nil {
		return nil, 0, err
	}
	select {
	case err := <-done:
		if err != nil {
			return p, 0, fmt.Errorf("first call to the %d-th member: %w", size, err)
		}
	case <-time.After(120 * time.Second):
		return p, 0, fmt.Errorf("the %d-th member did not answer within 120s", size)
	}
	return p, time.Since(p.Started), nil
}

// waitVisible waits until the caller sees every process of batch as a
// member with its service, and returns each one's time from start.
func waitVisible(ctx context.Context, e *Env, caller *Proc, batch []*Proc, timeout time.Duration) ([]time.Duration, error) {
	deadline := time.Now().Add(timeout)
	seen := make([]time.Duration, len(batch))
	left := len(batch)
	for left > 0 {
		ports, err := visiblePorts(e, caller)
		now := time.Now()
		if err == nil {
			for i, p := range batch {
				if seen[i] == 0 && ports[p.RuntimePort] {
					seen[i] = now.Sub(p.Started)
					left--
				}
			}
		}
		for _, p := range batch {
			if p.Exited() {
				return nil, fmt.Errorf("kar run on port %d exited while joining", p.RuntimePort)
			}
		}
		if now.After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("%d of %d members not visible within %s (last error: %v)", left, len(batch), timeout, err)
		}
		if left > 0 {
			time.Sleep(20 * time.Millisecond)
		}
	}
	return seen, nil
}

// visiblePorts is the runtime ports of the members the caller sees
// serving something.
func visiblePorts(e *Env, caller *Proc) (map[int]bool, error) {
	req, _ := http.NewRequest(http.MethodGet, caller.URL()+"/kar/v1/system/information/sidecars", nil)
	req.Header.Set("Accept", "application/json")
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var info map[string]struct {
		Port     int      `json:"port"`
		Services []string `json:"services"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		return nil, err
	}
	out := map[int]bool{}
	for _, s := range info {
		if len(s.Services) > 0 {
			out[s.Port] = true
		}
	}
	return out, nil
}

// idleCost measures what the mesh costs with no calls over window.
func idleCost(ctx context.Context, e *Env, procs []*Proc, window time.Duration, pt *SidecarsPoint) error {
	cpu0, self0 := sumTreeCPU(procs), procCPU(selfPID())
	s0, err := e.Snap(ctx)
	if err != nil {
		return err
	}
	time.Sleep(window)
	s1, err := e.Snap(ctx)
	if err != nil {
		return err
	}
	pt.Idle = s1.Sub(s0)
	pt.IdleSidecarsCPU = (sumTreeCPU(procs) - cpu0) / pt.Idle.Seconds
	pt.IdleBrokerProcCPU = (procCPU(selfPID()) - self0) / pt.Idle.Seconds
	return nil
}

func sumTreeCPU(procs []*Proc) float64 {
	var t float64
	for _, p := range procs {
		if !p.Exited() {
			t += treeCPU(p.PID())
		}
	}
	return t
}

func memoryAndConns(ctx context.Context, e *Env, members []*Proc, pt *SidecarsPoint) {
	var rss, pss, comp []float64
	var rc, kc []int
	_, kport, _ := splitHostPort(e.brokerAt)
	for _, p := range members {
		m := procMemory(p.PID())
		rss, pss = append(rss, m.RSS), append(pss, m.PSS)
		for _, c := range children(p.PID()) {
			comp = append(comp, procMemory(c).RSS)
		}
		s := sockets(p.PID(), e.redisPort, kport)
		rc, kc = append(rc, s[e.redisPort]), append(kc, s[kport])
	}
	pt.SidecarRSS, pt.SidecarRSSMax = median(rss), slices.Max(rss)
	pt.SidecarPSS, pt.ComponentRSS = median(pss), median(comp)
	pt.RedisConns, pt.KafkaConns = median(rc), median(kc)
	if n, err := e.RedisClients(ctx); err == nil {
		pt.RedisClientsPerSidecar = float64(n) / float64(len(members)+1) // and the caller
	}
}

// stream is a steady sequential call stream whose latencies are kept
// with their start times.
type stream struct {
	e      *Env
	url    string
	mu     sync.Mutex
	lat    []sample
	markAt time.Time
	paused atomic.Bool
	errs   atomic.Int64
	done   chan struct{}
	wg     sync.WaitGroup
}

type sample struct {
	at time.Time
	d  time.Duration
}

type streamStats struct {
	worst, p99 time.Duration
	n          int
}

func startStream(e *Env, url string) *stream {
	s := &stream{e: e, url: url, done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			select {
			case <-s.done:
				return
			default:
			}
			if s.paused.Load() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			start := time.Now()
			_, err := e.Do(http.MethodPost, url, "application/json", `{"x":1}`)
			d := time.Since(start)
			if err != nil {
				s.errs.Add(1)
			}
			s.mu.Lock()
			s.lat = append(s.lat, sample{start, d})
			s.mu.Unlock()
			// A user's steady traffic, not a load test: about 200 calls/s.
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return s
}

func (s *stream) stop()   { close(s.done); s.wg.Wait() }
func (s *stream) pause()  { s.paused.Store(true) }
func (s *stream) resume() { s.paused.Store(false) }
func (s *stream) mark() {
	s.mu.Lock()
	s.markAt = time.Now()
	s.mu.Unlock()
}

// window waits d and returns the stats of the calls made meanwhile.
func (s *stream) window(d time.Duration) streamStats {
	from := time.Now()
	time.Sleep(d)
	return s.since(from)
}

func (s *stream) sinceMark() streamStats {
	s.mu.Lock()
	from := s.markAt
	s.mu.Unlock()
	return s.since(from)
}

func (s *stream) since(from time.Time) streamStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ds []time.Duration
	for _, x := range s.lat {
		if !x.at.Before(from) {
			ds = append(ds, x.d)
		}
	}
	if len(ds) == 0 {
		return streamStats{}
	}
	slices.Sort(ds)
	return streamStats{worst: ds[len(ds)-1], p99: ds[len(ds)*99/100], n: len(ds)}
}

// waitCall calls url until it answers, up to timeout.
func waitCall(e *Env, url, body string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		_, err := e.Do(http.MethodPost, url, "application/json", body)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not answering within %s: %w", url, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Print writes the figures of one point.
func (pt SidecarsPoint) Print(w io.Writer) {
	fmt.Fprintf(w, "sidecars: %d members (+1 caller sidecar)\n", pt.Members)
	fmt.Fprintf(w, "  memory per sidecar: RSS median %.1f MiB (max %.1f), PSS median %.1f MiB; its component RSS %.1f MiB\n",
		pt.SidecarRSS, pt.SidecarRSSMax, pt.SidecarPSS, pt.ComponentRSS)
	if pt.JoinMax > 0 {
		fmt.Fprintf(w, "  join (kar run -> visible with its service), batches since the last size: p50 %s, max %s\n", ms(pt.JoinP50), ms(pt.JoinMax))
	}
	if pt.NthJoin > 0 {
		fmt.Fprintf(w, "  member #%d alone: kar run -> first request served %s\n", pt.Members, ms(pt.NthJoin))
	}
	fmt.Fprintf(w, "  others during the batch joins (steady calls to another member): worst %s, p99 %s (p99 at rest %s); during the last join alone: worst %s\n",
		ms(pt.StallWorst), ms(pt.StallP99), ms(pt.RestP99), ms(pt.SingleStallWorst))
	fmt.Fprintf(w, "  connections per sidecar: Redis %d, Kafka %d (CLIENT LIST: %.1f clients per sidecar)\n",
		pt.RedisConns, pt.KafkaConns, pt.RedisClientsPerSidecar)
	d := pt.Idle
	fmt.Fprintf(w, "  idle mesh over %.0f s: Redis %.0f commands/s (%.2f per member/s: %s)\n", d.Seconds,
		float64(d.RedisTotal())/d.Seconds, float64(d.RedisTotal())/d.Seconds/float64(pt.Members+1), Per(d.RedisCmds, d.Seconds*float64(pt.Members+1)))
	fmt.Fprintf(w, "                        Kafka %.0f requests/s (%.2f per member/s: %s)\n",
		float64(d.KafkaTotal())/d.Seconds, float64(d.KafkaTotal())/d.Seconds/float64(pt.Members+1), Per(d.KafkaReqs, d.Seconds*float64(pt.Members+1)))
	fmt.Fprintf(w, "                        CPU: sidecars+components %.3f cores, redis-server %.3f cores, broker+bench process %.3f cores\n",
		pt.IdleSidecarsCPU, d.RedisCPU/d.Seconds, pt.IdleBrokerProcCPU)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// median is the middle value of v (0 for none).
func median[T cmp.Ordered](v []T) T {
	var zero T
	if len(v) == 0 {
		return zero
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
