// Command autoscale measures the figures of issue 14 on this machine, with
// real kar processes (bin/kar, or KAR_BIN), a node component, redis-server
// and the Kafka-protocol broker of kar dev:
//
//   - scale from zero: from the first request held for a service with no
//     replica to its answer, through `kar autoscale` at its default poll
//     (1 s: the sidecar's wake, not the poll, starts the replica), minus
//     the component's own start (node, from exec to listening); medians
//     of several;
//   - time to reach N replicas under a step load;
//   - replica-seconds of a bursty load (on/off cycles) against a fixed
//     scale at the maximum. The timescale is compressed 10×: 3 s on and
//     9 s off four times stand for 30 s on and 90 s off, with the policy's
//     windows compressed alike: the defaults (scale-down window 3 s for
//     30 s, cooldown 6 s for 60 s) and shorter ones (1 s for 10 s, 3 s
//     for 30 s).
//
// -svg FILE also draws the run with the default windows: the load's on
// periods and the replicas over time (docs/autoscaling.svg).
//
// The scaler's own cost per poll is `go test -run '^$' -bench SourceRead
// -benchtime 500x ./autoscale/`.
//
//	scripts/build.sh && go run ./bench/autoscale [-svg docs/autoscaling.svg]
package main

import (
	"context"
	"flag"
	"fmt"
	"github.com/kar-runtime/kar/internal/ports"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// component answers /x at once and /slow after 100 ms.
const component = `require('http').createServer((q, s) => {
  if (q.url.endsWith('/slow')) setTimeout(() => s.end('ok'), 100); else s.end('ok');
}).listen(+process.env.KAR_APP_PORT, '127.0.0.1');
`

type bench struct {
	kar, script string
	env         []string
	src         *autoscale.Source
	procs       []*exec.Cmd
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/autoscale:", err)
		os.Exit(1)
	}
}

func run() error {
	svg := flag.String("svg", "", "draw the bursty run with the default windows into this SVG file")
	flag.Parse()
	kar := os.Getenv("KAR_BIN")
	if kar == "" {
		kar, _ = filepath.Abs("bin/kar")
	}
	if _, err := os.Stat(kar); err != nil {
		return fmt.Errorf("no kar binary: run `scripts/build.sh` first or set KAR_BIN")
	}
	ctx := context.Background()
	be, err := devenv.Start(ctx, devenv.Options{Redis: devenv.RedisServer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	defer be.Close()
	dir, err := os.MkdirTemp("", "kar-bench-autoscale")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{kar: kar, script: filepath.Join(dir, "server.js"), env: append(os.Environ(), be.Env()...)}
	if err := os.WriteFile(b.script, []byte(component), 0o644); err != nil {
		return err
	}
	b.src, err = autoscale.Dial(ctx, config.Backend{KafkaBrokers: []string{be.KafkaBrokers()}, KafkaVersion: "2.8.0", RedisHost: be.RedisHost(), RedisPort: be.RedisPort()})
	if err != nil {
		return err
	}
	defer b.src.Close()
	defer b.stopAll()

	start, err := b.componentStart(7)
	if err != nil {
		return err
	}
	fmt.Printf("component start (node, exec to listening): median %v\n", start.Round(time.Millisecond))
	zero, err := b.fromZero(7)
	if err != nil {
		return err
	}
	fmt.Printf("scale from zero (held request to answer, kar autoscale -poll 1s): median %v; minus the component's start: %v (goal <= 200ms)\n",
		zero.Round(time.Millisecond), (zero - start).Round(time.Millisecond))
	step, err := b.step(4)
	if err != nil {
		return err
	}
	fmt.Printf("step load (16 in flight, target 2): 0 -> 4 replicas in %v\n", step.Round(time.Millisecond))
	// The default windows (30 s, 60 s) and shorter ones (10 s, 30 s),
	// compressed 10x like the load.
	for i, w := range [][2]time.Duration{{3 * time.Second, 6 * time.Second}, {time.Second, 3 * time.Second}} {
		used, fixed, tl, err := b.bursty(4, 4, 3*time.Second, 9*time.Second, w[0], w[1])
		if err != nil {
			return err
		}
		if i == 0 && *svg != "" {
			if err := os.WriteFile(*svg, tl.svg(4, w[0], w[1], used/fixed), 0o644); err != nil {
				return err
			}
		}
		fmt.Printf("bursty load (4 x 3 s on / 9 s off, max 4, window %v, cooldown %v; 10x compressed: 30 s / 90 s, window %v, cooldown %v): %.1f replica-seconds vs %.1f at a fixed 4: %.0f%% (goal <= 40%%)\n",
			w[0], w[1], 10*w[0], 10*w[1], used, fixed, 100*used/fixed)
	}
	return nil
}

// start runs a process with the bench's environment; stopAll stops it.
func (b *bench) start(args ...string) (*exec.Cmd, error) {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = b.env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	b.procs = append(b.procs, cmd)
	return cmd, nil
}

func (b *bench) stopAll() {
	for _, c := range b.procs {
		c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range b.procs {
		done := make(chan struct{})
		go func() { c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		}
	}
	b.procs = nil
}

// freePort is a loopback port for a process the bench starts (package
// ports: below the ephemeral range, which the sidecars' connections use).
func freePort() int {
	p, err := ports.Pick(nil, nil)
	if err != nil {
		panic(err)
	}
	return p
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// waitFor polls cond every 5 ms until it holds or timeout passes.
func waitFor(timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v: %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

// componentStart is the component's own start: exec of node to its port
// accepting connections.
func (b *bench) componentStart(n int) (time.Duration, error) {
	var ds []time.Duration
	for range n {
		port := freePort()
		cmd := exec.Command("node", b.script)
		cmd.Env = append(os.Environ(), "KAR_APP_PORT="+strconv.Itoa(port))
		begin := time.Now()
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		err := waitFor(10*time.Second, "node listening", func() bool {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		ds = append(ds, time.Since(begin))
		cmd.Process.Kill()
		cmd.Wait()
		if err != nil {
			return 0, err
		}
	}
	return median(ds), nil
}

func (b *bench) members(app string) int {
	in, err := b.src.Read(context.Background(), autoscale.Target{App: app, Type: "service", Name: "worker"})
	if err != nil {
		return -1
	}
	return in.Members
}

// scaled starts kar autoscale of app's service worker with flags, and a
// caller sidecar of app; it returns the caller's runtime port.
func (b *bench) scaled(app string, flags ...string) (int, error) {
	args := append([]string{b.kar, "autoscale", "-app", app, "-service", "worker"}, flags...)
	if _, err := b.start(append(args, "--", "node", b.script)...); err != nil {
		return 0, err
	}
	port := freePort()
	if _, err := b.start(b.kar, "run", "-app", app, "-runtime_port", strconv.Itoa(port)); err != nil {
		return 0, err
	}
	return port, waitFor(30*time.Second, "caller healthy", func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/kar/v1/system/health", port))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})
}

func call(port int, path string) error {
	resp, err := http.Post(fmt.Sprintf("http://127.0.0.1:%d/kar/v1/service/worker/call/%s", port, path), "application/json", nil)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("call %s: %d", path, resp.StatusCode)
	}
	return nil
}

// fromZero: n calls, each with the service at zero replicas.
func (b *bench) fromZero(n int) (time.Duration, error) {
	const app = "bench-zero"
	port, err := b.scaled(app, "-max", "1", "-cooldown", "300ms", "-scale_down_window", "0s")
	if err != nil {
		return 0, err
	}
	defer b.stopAll()
	var ds []time.Duration
	for range n {
		if err := waitFor(30*time.Second, "zero replicas", func() bool { return b.members(app) == 0 }); err != nil {
			return 0, err
		}
		begin := time.Now()
		if err := call(port, "x"); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(begin))
	}
	return median(ds), nil
}

// load keeps inFlight slow calls going until stop is closed.
func load(port, inFlight int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				call(port, "slow")
			}
		}()
	}
	return &wg
}

// step: from zero, 16 calls in flight; the time until n replicas.
func (b *bench) step(n int) (time.Duration, error) {
	const app = "bench-step"
	port, err := b.scaled(app, "-max", strconv.Itoa(n), "-target", "2")
	if err != nil {
		return 0, err
	}
	defer b.stopAll()
	stop := make(chan struct{})
	begin := time.Now()
	wg := load(port, 16, stop)
	err = waitFor(60*time.Second, fmt.Sprintf("%d replicas", n), func() bool { return b.members(app) == n })
	took := time.Since(begin)
	close(stop)
	wg.Wait()
	return took, err
}

// bursty: cycles of on (16 in flight) and off, max replicas; the
// replica-seconds used (members sampled every 50 ms) and those of a fixed
// scale at max over the same time.
func (b *bench) bursty(cycles, maxN int, on, off, window, cooldown time.Duration) (used, fixed float64, tl *timeline, err error) {
	app := fmt.Sprintf("bench-bursty-%d", window.Milliseconds())
	port, err := b.scaled(app, "-max", strconv.Itoa(maxN), "-target", "2", "-poll", "100ms",
		"-scale_down_window", window.String(), "-cooldown", cooldown.String())
	if err != nil {
		return 0, 0, nil, err
	}
	defer b.stopAll()
	tl = &timeline{}
	var sum atomic.Int64 // replica-milliseconds
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		last := time.Now()
		for {
			select {
			case <-done:
				return
			case <-time.After(50 * time.Millisecond):
			}
			now := time.Now()
			m := b.members(app)
			if m > 0 {
				sum.Add(int64(m) * now.Sub(last).Milliseconds())
			}
			tl.add(now, m)
			last = now
		}
	}()
	begin := time.Now()
	tl.begin(begin)
	for range cycles {
		stop := make(chan struct{})
		on0 := time.Now()
		wg := load(port, 16, stop)
		time.Sleep(on)
		close(stop)
		wg.Wait()
		tl.on(on0, time.Now())
		time.Sleep(off)
	}
	total := time.Since(begin)
	close(done)
	<-sampled
	return float64(sum.Load()) / 1000, float64(maxN) * total.Seconds(), tl, nil
}

// timeline is a bursty run: the replicas sampled, the load's on periods.
type timeline struct {
	mu      sync.Mutex
	start   time.Time
	at      []time.Duration
	members []int
	ons     [][2]time.Duration
}

func (tl *timeline) begin(t time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.start = t
}

func (tl *timeline) add(t time.Time, m int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if !tl.start.IsZero() && m >= 0 {
		tl.at = append(tl.at, t.Sub(tl.start))
		tl.members = append(tl.members, m)
	}
}

func (tl *timeline) on(from, to time.Time) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.ons = append(tl.ons, [2]time.Duration{from.Sub(tl.start), to.Sub(tl.start)})
}

// svg draws the timeline: grey bands while the load is on, the replicas
// as a step line, the fixed scale at maxN dashed.
func (tl *timeline) svg(maxN int, window, cooldown time.Duration, ratio float64) []byte {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	const w, h, left, top, bottom = 760.0, 260.0, 50.0, 30.0, 40.0
	end := tl.at[len(tl.at)-1].Seconds()
	x := func(s float64) float64 { return left + (w-left-10)*s/end }
	y := func(n float64) float64 { return top + (h-top-bottom)*(1-n/float64(maxN)) }
	var out []byte
	p := func(f string, a ...any) { out = fmt.Appendf(out, f, a...) }
	p(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", w, h)
	p(`<rect width="100%%" height="100%%" fill="white"/>` + "\n")
	for _, o := range tl.ons {
		p(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#dde6f5"/>`+"\n", x(o[0].Seconds()), top, x(o[1].Seconds())-x(o[0].Seconds()), h-top-bottom)
	}
	for n := 0; n <= maxN; n++ {
		p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ccc"/><text x="%.0f" y="%.1f" text-anchor="end">%d</text>`+"\n", left, w-10, y(float64(n)), y(float64(n)), left-6, y(float64(n))+4, n)
	}
	for s := 0.0; s <= end; s += 6 {
		p(`<text x="%.1f" y="%.0f" text-anchor="middle">%.0f s</text>`+"\n", x(s), h-bottom+16, s)
	}
	p(`<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="6 4"/>`+"\n", left, w-10, y(float64(maxN)), y(float64(maxN)))
	p(`<polyline fill="none" stroke="#1f5fbf" stroke-width="2" points="`)
	for i, t := range tl.at {
		if i > 0 {
			p("%.1f,%.1f ", x(t.Seconds()), y(float64(tl.members[i-1])))
		}
		p("%.1f,%.1f ", x(t.Seconds()), y(float64(tl.members[i])))
	}
	p(`"/>` + "\n")
	p(`<text x="%.0f" y="18">replicas (blue) while 16 calls are in flight (shaded), kar autoscale -max 4 -target 2, window %v, cooldown %v: %.0f%% of a fixed 4 (dashed)</text>`+"\n", left, window, cooldown, 100*ratio)
	p(`<text x="%.0f" y="%.0f" text-anchor="middle">time (10x compressed: 3 s on / 9 s off stand for 30 s / 90 s)</text>`+"\n", (w+left)/2, h-6)
	p("</svg>\n")
	return out
}
