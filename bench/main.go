// Command bench measures kar against the figures of DESIGN.md: the bare-parts
// floor, sequential call latency, calls/s with 64 in flight, one-shot
// `kar rest`, a new replica's first request, the stall of other members
// during joins and leaves, CPU per call and the server sidecar's RSS.
//
//	scripts/build.sh && go run ./bench [-n 2000] [-duration 5s] [-scrape 1s] [-startup=false] [-floor=false]
//
// KAR_BIN=path/kar measures another build; BENCH_PPROF_CALLER=127.0.0.1:6060
// and BENCH_PPROF_SERVER=127.0.0.1:6061 serve pprof on the caller and the
// server sidecar (KAR_PPROF_ADDR); with BENCH_PPROF_DIR as well, the bench
// saves CPU profiles of both over each load (service-caller.pprof, ...)
// and their allocation profiles after it (service-caller-allocs.pprof).
//
// With -callpath the bench also traces both sidecars over sequential calls
// and prints where a call's time goes, step by step (callpath.go).
//
// Figures are medians over repeated runs; the machine is noisy, so compare
// ratios taken in the same run.
package main

import (
	"context"
	"debug/buildinfo"
	"flag"
	"fmt"
	"github.com/kar-runtime/kar/internal/ports"
	"github.com/kar-runtime/kar/internal/tail"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/devenv"
)

func main() {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "component":
			serveComponent()
			return
		case "backend":
			serveBackend()
			return
		case "responder":
			respond(os.Args[2])
			return
		case "client":
			os.Exit(oneCall())
		case "kresponder":
			kafkaResponder(os.Args[2], os.Args[3], os.Args[4])
			return
		case "krequester":
			n, _ := strconv.Atoi(os.Args[5])
			inflight, _ := strconv.Atoi(os.Args[6])
			kafkaRequester(os.Args[2], os.Args[3], os.Args[4], n, inflight)
			return
		case "hopclient":
			n, _ := strconv.Atoi(os.Args[4])
			inflight, _ := strconv.Atoi(os.Args[5])
			hopClient(os.Args[2], os.Args[3], n, inflight)
			return
		case "bareserver":
			bareServer()
			return
		case "chainresponder":
			concurrent, _ := strconv.ParseBool(os.Args[6])
			chainResponder(os.Args[2], os.Args[3], os.Args[4], os.Args[5], concurrent)
			return
		case "chaincaller":
			chainCaller(os.Args[2], os.Args[3], os.Args[4], os.Args[5])
			return
		}
	}
	var o options
	flag.IntVar(&o.n, "n", 2000, "sequential calls per latency figure, over all rounds")
	flag.IntVar(&o.rounds, "rounds", 5, "rounds the sequential calls are timed in, each with its floors (rounds.go)")
	flag.DurationVar(&o.dur, "duration", 5*time.Second, "length of each throughput run")
	flag.IntVar(&o.cpuRounds, "cpurounds", 3, "rounds of loads that time the sidecars' CPU back to back with the chain's relays after the run's loads, each load a third of -duration (rounds.go; 0: none)")
	flag.IntVar(&o.inflight, "inflight", 64, "calls in flight for the throughput figure")
	flag.IntVar(&o.reps, "reps", 5, "repetitions of the start-up figures")
	flag.BoolVar(&o.actors, "actors", true, "also measure actor calls")
	flag.DurationVar(&o.scrape, "scrape", 0, "scrape both sidecars' /metrics this often while measuring, as Prometheus would (0: never)")
	flag.BoolVar(&o.startup, "startup", true, "also measure the start-up figures (one-shot kar rest, kar run, new replica, joins and leaves)")
	flag.BoolVar(&o.withFloor, "floor", true, "measure the floor (without it, ratios to the floor print as +Inf: for A/B runs of two builds)")
	soakFor := flag.Duration("soak", 0, "instead of the figures, load a server sidecar this long and sample its memory (soak.go)")
	soakEvery := flag.Duration("soak.every", 5*time.Second, "how often -soak samples the server sidecar's memory")
	soakPerID := flag.Int("soak.per_id", 100, "calls of an actor worker to one id before -soak moves it to a new one (0: never)")
	flag.BoolVar(&o.outside, "outside", true, "also time each round's sequential service call and bare hop with wrk, when it is on PATH (outside.go)")
	flag.BoolVar(&o.callPath, "callpath", false, "also trace both sidecars over sequential calls and print where a call's time goes (callpath.go)")
	flag.Parse()
	if *soakFor > 0 {
		if err := runSoak(*soakFor, *soakEvery, o.inflight, *soakPerID); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if o.callPath {
		// The traces are taken from the sidecars' pprof.
		for _, name := range []string{"BENCH_PPROF_CALLER", "BENCH_PPROF_SERVER"} {
			if os.Getenv(name) == "" {
				port, _ := freePort()
				os.Setenv(name, "127.0.0.1:"+strconv.Itoa(port))
			}
		}
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// serveComponent is a component on net/http: it answers every request
// with its body, and hosts the actor type Counter. The floor times its
// hop against the bare server's (bareServer), which the mesh's loads use.
func serveComponent() {
	mux := http.NewServeMux()
	mux.HandleFunc("/kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			w.WriteHeader(http.StatusCreated)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /kar/impl/v1/actor/{type}/{id}/{method}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/kar+json")
		fmt.Fprintf(w, `{"value":%s}`, strings.TrimSuffix(strings.TrimPrefix(string(b), "["), "]"))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("KAR_APP_PORT"), Handler: mux}
	srv.ListenAndServe()
}

// oneCall is the benchmark's client component: one call through its
// sidecar, then exit, as the hello world's client does.
func oneCall() int {
	resp, err := http.Post("http://127.0.0.1:"+os.Getenv("KAR_RUNTIME_PORT")+"/kar/v1/service/echo/call/echo", "application/json", strings.NewReader(`{"x":1}`))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return 1
	}
	return 0
}

// serveBackend runs the broker and Redis in a process of their own, as
// they would run in production, and prints their environment.
func serveBackend() {
	be, err := devenv.Start(context.Background(), devenv.Options{Redis: devenv.RedisServer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	counts := countKafka(be.KafkaCluster())
	fmt.Println(strings.Join(be.Env(), " "))
	answerCounts(counts) // until the parent closes stdin
	be.Close()
}

type env struct {
	kar     string
	self    string
	beEnv   []string
	brokers string
	backend *exec.Cmd
	// beIn, beOut: the backend's stdin and stdout, to ask for its
	// broker's counts (kafkacount.go); beMu keeps one question at a time.
	beIn    io.Writer
	beOut   io.Reader
	beMu    sync.Mutex
	procs   []*exec.Cmd
	logs    []*tail.Buffer // each kar process's stderr, for waitCall's error
	client  *http.Client
	bare    bareClient
	outside *outsider // nil: no outside harness (outside.go)
	// topics counts the topics the floor's rounds made: each round
	// reads its own from the start.
	topics int
}

// nextRound numbers a round's topic.
func (e *env) nextRound() int { e.topics++; return e.topics }

// logTo keeps the last of cmd's stderr, so that a mesh that does not come
// up says why.
func (e *env) logTo(cmd *exec.Cmd) {
	b := &tail.Buffer{Max: 16 << 10}
	cmd.Stderr = b
	e.logs = append(e.logs, b)
}

// tails is the end of each kar process's log.
func (e *env) tails() string {
	var out strings.Builder
	for i, b := range e.logs {
		fmt.Fprintf(&out, "\n--- kar process %d, last of its log:\n%s", i, b.String())
	}
	return out.String()
}

// startEnv starts the backend (redis-server and the broker) for a run of
// the kar binary under test; stop stops it and every process started.
func startEnv() (e *env, stop func(), err error) {
	e = &env{client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024}}}
	if e.kar, err = karBin(); err != nil {
		return nil, nil, err
	}
	if e.self, err = os.Executable(); err != nil {
		return nil, nil, err
	}
	stopBackend, err := e.startBackend()
	if err != nil {
		return nil, nil, err
	}
	return e, func() { e.stopAll(); stopBackend() }, nil
}

// options are the bench's flags (main).
type options struct {
	n, rounds, cpuRounds, inflight, reps int
	dur, scrape                          time.Duration
	actors, startup, withFloor, callPath bool
	outside                              bool // wrk times the sequential call and the hop too (outside.go)
}

func run(o options) error {
	n, dur, inflight, reps := o.n, o.dur, o.inflight, o.reps
	actors, startup, withFloor, callPath, scrape := o.actors, o.startup, o.withFloor, o.callPath, o.scrape
	e, stop, err := startEnv()
	if err != nil {
		return err
	}
	defer stop()
	fmt.Printf("kar benchmark: %s (%s); redis-server and the Kafka-protocol broker (kfake) in their own process at %s; %d CPUs\n\n", e.kar, buildOf(e.kar), e.brokers, numCPU())
	if o.outside {
		dir, err := os.MkdirTemp("", "kar-bench-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if e.outside, err = newOutsider(dir); err != nil {
			fmt.Printf("outside harness: not run (%v)\n\n", err)
		}
	}

	var floor floorResult
	if withFloor {
		if floor, err = e.measureFloorAll(n, inflight, dur); err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		floor.print(inflight)
	}

	// The mesh: one server component, one caller sidecar.
	serverPort, _ := freePort()
	server, err := e.startKar("bench", []string{"-service", "echo", "-actors", "Counter", "-runtime_port", strconv.Itoa(serverPort)}, true)
	if err != nil {
		return err
	}
	caller, callerURL, err := e.startSidecar("bench")
	if err != nil {
		return err
	}
	serverURL := "http://127.0.0.1:" + strconv.Itoa(serverPort)
	sides := sidecars{caller: caller.Process.Pid, server: server.Process.Pid, callerURL: callerURL, serverURL: serverURL}
	if scrape > 0 {
		stopScrape := e.scrape(scrape, callerURL, serverURL)
		defer stopScrape()
		fmt.Printf("scraping both sidecars' /metrics every %s\n", scrape)
	}
	url := callerURL + "/kar/v1/service/echo/call/echo"
	if err := e.waitCall(url, 30*time.Second); err != nil {
		return err
	}
	aurl := func(i int) string { return fmt.Sprintf("%s/kar/v1/actor/Counter/c%d/call/incr", callerURL, i) }
	actorURL := ""
	if actors {
		if err := e.waitCall(aurl(0), 30*time.Second); err != nil {
			fmt.Printf("actor calls: not measured (%v)\n", err)
			actors = false
		} else {
			actorURL = aurl(0)
		}
	}
	rs, err := e.sequentialRounds(o.rounds, n, url, actorURL, withFloor)
	if err != nil {
		return fmt.Errorf("sequential calls: %w", err)
	}
	printRounds(rs)
	figure(rs, func(r seqRound) []time.Duration { return r.service }).print("service", " (issue 16: ≤ 1.2×; original 2.4×)")
	if actors {
		figure(rs, func(r seqRound) []time.Duration { return r.actor }).print("actor", "")
	}
	if e.outside != nil {
		printOutside(rs)
	}
	if callPath {
		if err := e.callPath(url, os.Getenv("BENCH_PPROF_CALLER"), os.Getenv("BENCH_PPROF_SERVER")); err != nil {
			fmt.Printf("where a sequential call's time goes: not measured (%v)\n", err)
		}
	}

	s0 := e.snapshot(sides)
	stopProf := profileLoad("service", dur)
	calls, elapsed := e.throughput(url, inflight, dur)
	stopProf()
	s1 := e.snapshot(sides)
	rate := float64(calls) / elapsed.Seconds()
	fmt.Printf("service calls/s, %d in flight: %.0f (original here ~3,800)\n", inflight, rate)
	s1.sub(s0).print(calls, floor.cpu(), floor.chainLoad.cpu())
	_, rssService := memory(server.Process.Pid)

	if actors {
		a0 := e.snapshot(sides)
		stopProf := profileLoad("actor", dur)
		acalls, aelapsed := e.throughputActors(aurl, inflight, dur)
		stopProf()
		a1 := e.snapshot(sides)
		fmt.Printf("actor calls/s, %d instances: %.0f (original here ~3,700)\n", inflight, float64(acalls)/aelapsed.Seconds())
		a1.sub(a0).print(acalls, floor.cpu(), floor.chainLoad.cpu())
	}

	hwm, rss := memory(server.Process.Pid)
	fmt.Printf("server sidecar memory: RSS %.1f MiB after service load, %.1f MiB after actor load, peak %.1f MiB (DESIGN: ≤ 20 MiB, flat; original 52 MiB after the load, 279 later)\n", rssService, rss, hwm)
	anon, file := rssParts(server.Process.Pid)
	fmt.Printf("  of which its own (anonymous: heap, stacks, runtime) %.1f MiB, and pages of files (the kar executable, libc; shared with every process mapping them) %.1f MiB\n", anon, file)
	if withFloor && o.cpuRounds > 0 {
		var actorLoad func(int) string
		if actors {
			actorLoad = aurl
		}
		rs, err := e.cpuRounds(o.cpuRounds, dur/3, inflight, sides, url, actorLoad)
		if err != nil {
			return err
		}
		printCPURounds(rs, inflight)
	}

	if !startup {
		return nil
	}

	// One-shot kar rest, median of reps.
	var rests []time.Duration
	for i := 0; i < reps; i++ {
		start := time.Now()
		cmd := exec.Command(e.kar, "rest", "-app", "bench", "post", "echo", "echo", `{"x":1}`)
		cmd.Env = append(os.Environ(), e.beEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kar rest: %v: %s", err, out)
		}
		rests = append(rests, time.Since(start))
	}
	fmt.Printf("one-shot kar rest (start, call, exit): median %s (DESIGN: ≤ 50 ms; original 4.6–8.0 s)\n", ms(median(rests)))

	// kar run of a client component: start, one call, exit.
	var clients []time.Duration
	for i := 0; i < reps; i++ {
		start := time.Now()
		cmd := exec.Command(e.kar, "run", "-app", "bench", e.self, "client")
		cmd.Env = append(os.Environ(), e.beEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("kar run client: %v: %s", err, out)
		}
		clients = append(clients, time.Since(start))
	}
	fmt.Printf("kar run of a client component (start, one call, exit): median %s\n", ms(median(clients)))

	// New replica: kar run → first request served. The call is sent first
	// and waits for the component.
	var firsts []time.Duration
	for i := 0; i < reps; i++ {
		svc := "fresh" + strconv.Itoa(i)
		done := make(chan error, 1)
		go func() {
			resp, err := e.client.Post(callerURL+"/kar/v1/service/"+svc+"/call/x", "application/json", strings.NewReader("{}"))
			if err == nil {
				resp.Body.Close()
			}
			done <- err
		}()
		time.Sleep(50 * time.Millisecond) // let the call be held before the replica starts
		start := time.Now()
		p, err := e.startKar("bench", []string{"-service", svc}, false)
		if err != nil {
			return err
		}
		if err := <-done; err != nil {
			return err
		}
		firsts = append(firsts, time.Since(start))
		e.stop(p)
	}
	// The same component alone, as a reference: a new replica cannot
	// serve before its component can.
	var alone []time.Duration
	for i := 0; i < reps; i++ {
		d, err := e.componentAlone()
		if err != nil {
			return err
		}
		alone = append(alone, d)
	}
	fmt.Printf("new replica: kar run → first request served: median %s; the component alone, started → first request served: %s (DESIGN: ≤ 50 ms; original 4.6–7.1 s)\n", ms(median(firsts)), ms(median(alone)))

	// Stall during joins and leaves: sequential calls to echo while other
	// replicas of echo join and leave.
	stall := e.churn(url, reps)
	fmt.Printf("other members during %d joins and leaves, the worst call of each, median of them: while joining %s, while leaving %s; in as many %v windows at rest %s (DESIGN: stall ≤ 10 ms; original 3.3–25 s)\n",
		reps, worstOf(stall.join), worstOf(stall.leave), churnWindow, worstOf(stall.rest))
	return nil
}

// buildOf says how the kar binary at path was built: the memory figures
// depend on it (a cgo build maps libc, 2 MiB of a sidecar's RSS).
func buildOf(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return "build unknown: " + err.Error()
	}
	for _, s := range bi.Settings {
		if s.Key == "CGO_ENABLED" && s.Value == "0" {
			return "static, as the images build it"
		}
	}
	return "a cgo build, unlike the images: `scripts/build.sh` builds kar as they do"
}

func karBin() (string, error) {
	if k := os.Getenv("KAR_BIN"); k != "" {
		return k, nil
	}
	if p, err := filepath.Abs("bin/kar"); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no kar binary: run `scripts/build.sh` first or set KAR_BIN")
}

func (e *env) startKar(app string, flags []string, component bool) (*exec.Cmd, error) {
	port, _ := freePort()
	args := append([]string{"run", "-app", app, "-app_port", strconv.Itoa(port)}, flags...)
	// The component is the bare server (floor.go), as the chain floor's.
	args = append(args, e.self, "bareserver")
	cmd := exec.Command(e.kar, args...)
	cmd.Env = append(os.Environ(), e.beEnv...)
	e.logTo(cmd)
	if component && os.Getenv("BENCH_PPROF_SERVER") != "" && len(e.procs) == 0 {
		cmd.Env = append(cmd.Env, "KAR_PPROF_ADDR="+os.Getenv("BENCH_PPROF_SERVER"))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	e.procs = append(e.procs, cmd)
	return cmd, nil
}

// componentAlone starts the component of startKar without a sidecar and
// times its start until it has answered a first request, trying to
// connect every 0.2 ms.
func (e *env) componentAlone() (time.Duration, error) {
	port, _ := freePort()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(e.self, "bareserver")
	cmd.Env = append(os.Environ(), "KAR_APP_PORT="+strconv.Itoa(port))
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	for {
		resp, err := e.client.Post("http://"+addr+"/x", "application/json", strings.NewReader("{}"))
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return time.Since(start), nil
		}
		if time.Since(start) > 10*time.Second {
			return 0, fmt.Errorf("the component alone did not answer: %w", err)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func (e *env) startSidecar(app string) (*exec.Cmd, string, error) {
	port, _ := freePort()
	cmd := exec.Command(e.kar, "run", "-app", app, "-runtime_port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), e.beEnv...)
	e.logTo(cmd)
	if a := os.Getenv("BENCH_PPROF_CALLER"); a != "" {
		cmd.Env = append(cmd.Env, "KAR_PPROF_ADDR="+a)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	e.procs = append(e.procs, cmd)
	return cmd, "http://127.0.0.1:" + strconv.Itoa(port), nil
}

// scrape reads /metrics of each sidecar every period until stopped.
func (e *env) scrape(period time.Duration, urls ...string) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			for _, u := range urls {
				if resp, err := e.client.Get(u + "/metrics"); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (e *env) stop(cmd *exec.Cmd) {
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func (e *env) stopAll() {
	for _, p := range e.procs {
		if p.ProcessState == nil {
			e.stop(p)
		}
	}
}

// call makes one call with the bare HTTP/1.1 client, as the floor's hops do.
func (e *env) call(url string) error {
	status, body, err := e.bare.post(url, "application/json", `[1]`)
	if err != nil {
		return err
	}
	if status >= 300 {
		return fmt.Errorf("status %d: %.200s", status, body)
	}
	return nil
}

func (e *env) waitCall(url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = e.call(url); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not answering: %v%s", url, err, e.tails())
}

func (e *env) sequential(url string, n int) []time.Duration {
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		start := time.Now()
		if e.call(url) == nil {
			lat = append(lat, time.Since(start))
		}
	}
	return lat
}

func (e *env) throughput(url string, inflight int, dur time.Duration) (int64, time.Duration) {
	return e.load(func(int) string { return url }, inflight, dur)
}

func (e *env) throughputActors(url func(int) string, inflight int, dur time.Duration) (int64, time.Duration) {
	return e.load(url, inflight, dur)
}

// profileLoad saves CPU profiles of the sidecars that serve pprof over a
// load of length dur, when BENCH_PPROF_DIR says where.
func profileLoad(name string, dur time.Duration) (wait func()) {
	dir := os.Getenv("BENCH_PPROF_DIR")
	var wg sync.WaitGroup
	for side, env := range map[string]string{"caller": "BENCH_PPROF_CALLER", "server": "BENCH_PPROF_SERVER"} {
		addr := os.Getenv(env)
		if dir == "" || addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			secs := max(int((dur - 500*time.Millisecond).Seconds()), 1)
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", addr, secs))
			if err != nil {
				fmt.Fprintln(os.Stderr, "bench: profile:", err)
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			os.WriteFile(filepath.Join(dir, name+"-"+side+".pprof"), b, 0o644)
			// And the allocations since the sidecar started.
			if resp, err = http.Get(fmt.Sprintf("http://%s/debug/pprof/allocs", addr)); err == nil {
				b, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
				os.WriteFile(filepath.Join(dir, name+"-"+side+"-allocs.pprof"), b, 0o644)
			}
		}()
	}
	return wg.Wait
}

func (e *env) load(url func(int) string, inflight int, dur time.Duration) (int64, time.Duration) {
	var calls atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(dur)
	start := time.Now()
	for i := 0; i < inflight; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			u := url(i)
			for time.Now().Before(stop) {
				if e.call(u) == nil {
					calls.Add(1)
				}
			}
		}(i)
	}
	wg.Wait()
	return calls.Load(), time.Since(start)
}

// churnWindow is how long a join lasts in churn: the replica joins and
// serves a share of the load.
const churnWindow = 500 * time.Millisecond

// stallResult holds the worst call of each window of churn: each join,
// each leave, and as many windows at rest, as long as a join's.
type stallResult struct{ join, leave, rest []time.Duration }

// churn makes other replicas of echo join and leave while one caller
// calls echo sequentially, and keeps the worst call seen in each window:
// while a replica was joining (from its start until it served a share of
// the load), while one was leaving (from its SIGTERM until it exited), and
// in a window as long as a join's with nothing joining or leaving. On a
// shared machine any half second has its slow call; the windows at rest
// say how slow, so that a join is judged by what it adds.
func (e *env) churn(url string, reps int) stallResult {
	const (
		steady = iota
		joining
		leaving
		resting
	)
	var phase atomic.Int32
	var worst [4]atomic.Int64 // of the current window of each phase
	var calls atomic.Int64    // calls done, counted once their worst is kept
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			ph := phase.Load()
			start := time.Now()
			e.call(url)
			d := int64(time.Since(start))
			if p2 := phase.Load(); p2 > ph {
				ph = p2
			}
			for {
				w := worst[ph].Load()
				if d <= w || worst[ph].CompareAndSwap(w, d) {
					break
				}
			}
			calls.Add(1)
		}
	}()
	var res stallResult
	// in runs one window of phase ph and keeps its worst call, counting
	// the call still out when the window closes (it began in the window).
	in := func(ph int32, list *[]time.Duration, window func()) {
		worst[ph].Store(0)
		phase.Store(ph)
		window()
		phase.Store(steady)
		out := calls.Load()
		for deadline := time.Now().Add(10 * time.Second); calls.Load() == out && time.Now().Before(deadline); {
			time.Sleep(100 * time.Microsecond)
		}
		*list = append(*list, time.Duration(worst[ph].Load()))
	}
	for i := 0; i < reps; i++ {
		var p *exec.Cmd
		var err error
		in(joining, &res.join, func() {
			if p, err = e.startKar("bench", []string{"-service", "echo"}, true); err == nil {
				time.Sleep(churnWindow)
			}
		})
		if err != nil {
			res.join = res.join[:len(res.join)-1]
			break
		}
		in(leaving, &res.leave, func() { e.stop(p) })
		time.Sleep(100 * time.Millisecond)
		in(resting, &res.rest, func() { time.Sleep(churnWindow) })
	}
	close(stop)
	wg.Wait()
	return res
}

// worstOf says the median and the worst of the windows' worst calls.
func worstOf(ws []time.Duration) string {
	if len(ws) == 0 {
		return "none"
	}
	return fmt.Sprintf("%s (worst %s)", ms(median(ws)), ms(slices.Max(ws)))
}

// backendCPU is the CPU seconds of the broker's process and its redis-server.
func (e *env) backendCPU() float64 {
	if e.backend == nil || e.backend.Process == nil {
		return 0
	}
	total := procCPU(e.backend.Process.Pid)
	out, _ := exec.Command("pgrep", "-P", strconv.Itoa(e.backend.Process.Pid)).Output()
	for _, f := range strings.Fields(string(out)) {
		pid, _ := strconv.Atoi(f)
		total += procCPU(pid)
	}
	return total
}

func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

func memory(pid int) (hwm, rss float64) {
	st := procStatus(pid)
	return st["VmHWM"], st["VmRSS"]
}

// rssParts splits a process's resident memory into its anonymous pages
// and the pages of files it maps.
func rssParts(pid int) (anon, file float64) {
	st := procStatus(pid)
	return st["RssAnon"], st["RssFile"]
}

// procStatus reads the kB figures of /proc/PID/status, in MiB by name.
func procStatus(pid int) map[string]float64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[2] == "kB" {
			v, _ := strconv.ParseFloat(f[1], 64)
			out[strings.TrimSuffix(f[0], ":")] = v / 1024
		}
	}
	return out
}

func (e *env) startBackend() (func(), error) {
	cmd := exec.Command(e.self, "backend")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	stop := func() { stdin.Close(); cmd.Wait() }
	e.backend, e.beIn, e.beOut = cmd, stdin, stdout
	line, err := readLine(stdout)
	if err != nil || strings.HasPrefix(line, "error") {
		stop()
		return nil, fmt.Errorf("backend: %v %s", err, line)
	}
	e.beEnv = strings.Fields(line)
	for _, kv := range e.beEnv {
		if v, ok := strings.CutPrefix(kv, "KAFKA_BROKERS="); ok {
			e.brokers = v
		}
	}
	return stop, nil
}

func readLine(r io.Reader) (string, error) {
	var sb strings.Builder
	b := make([]byte, 1)
	for {
		if _, err := r.Read(b); err != nil {
			return sb.String(), err
		}
		if b[0] == '\n' {
			return sb.String(), nil
		}
		sb.WriteByte(b[0])
	}
}

func floorConfig() *sarama.Config {
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	return cfg
}

// respond is the floor's responder process: every record read on
// partition 0 is produced back on partition 1, as a serving sidecar would.
func respond(brokers string) {
	cfg := floorConfig()
	cons, err := sarama.NewConsumer([]string{brokers}, cfg)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	pc, err := cons.ConsumePartition("floor", 0, sarama.OffsetNewest)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	prod, err := sarama.NewSyncProducer([]string{brokers}, cfg)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	fmt.Println("ready")
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	for m := range pc.Messages() {
		prod.SendMessage(&sarama.ProducerMessage{Topic: "floor", Partition: 1, Value: sarama.ByteEncoder(m.Value)})
	}
}

// measureFloor times the same path from bare parts, each side in its own
// process as the sidecars are: a request produced to one partition and
// consumed by the responder, its response produced to another and consumed.
func (e *env) measureFloor(n int) (time.Duration, error) {
	cfg := floorConfig()
	prodClient, err := sarama.NewClient([]string{e.brokers}, cfg)
	if err != nil {
		return 0, err
	}
	defer prodClient.Close()
	admin, err := sarama.NewClusterAdminFromClient(prodClient)
	if err != nil {
		return 0, err
	}
	admin.CreateTopic("floor", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
	prodClient.RefreshMetadata("floor")
	producer, err := sarama.NewSyncProducerFromClient(prodClient)
	if err != nil {
		return 0, err
	}
	// Responses are read on a connection of their own, as a sidecar does.
	c, err := sarama.NewClient([]string{e.brokers}, cfg)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	cons, err := sarama.NewConsumerFromClient(c)
	if err != nil {
		return 0, err
	}
	resps, err := cons.ConsumePartition("floor", 1, sarama.OffsetNewest)
	if err != nil {
		return 0, err
	}
	defer resps.AsyncClose()
	rcmd := exec.Command(e.self, "responder", e.brokers)
	stdin, _ := rcmd.StdinPipe()
	stdout, _ := rcmd.StdoutPipe()
	if err := rcmd.Start(); err != nil {
		return 0, err
	}
	defer func() { stdin.Close(); rcmd.Wait() }()
	if line, err := readLine(stdout); err != nil || line != "ready" {
		return 0, fmt.Errorf("responder: %v %s", err, line)
	}
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n+100; i++ {
		start := time.Now()
		if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: "floor", Partition: 0, Value: sarama.StringEncoder(`{"x":1}`)}); err != nil {
			return 0, err
		}
		<-resps.Messages()
		if i >= 100 { // warm-up
			lat = append(lat, time.Since(start))
		}
	}
	return percentile(lat, 50), nil
}

// freePort is a loopback port for a process the bench starts (package
// ports: below the ephemeral range, which the sidecars' connections use).
func freePort() (int, error) { return ports.Pick(nil, nil) }

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func median(d []time.Duration) time.Duration { return percentile(d, 50) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}
