// Command scale measures how kar's cost grows with the work (issue 15):
// members of one application, actor instances, reminders and
// subscriptions, and the Redis commands and Kafka requests each kind of
// call costs — the inputs of docs/scaling.md's model.
//
//	scripts/build.sh && go run ./bench/scale -what sidecars|actors|subs|ops|all [flags]
//
// It starts its own redis-server (on a free port) and a Kafka-protocol
// broker in its own process (kfake), which counts every request it
// receives; the kar processes are `kar run` as users launch them, each
// with a tiny Go component (this binary, run with SCALE_BENCH_COMPONENT=1).
// Redis's commands are INFO commandstats deltas (commands run by scripts
// included), its memory INFO's used_memory.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if os.Getenv(componentEnv) == "1" {
		if err := serveComponent(); err != nil {
			fmt.Fprintln(os.Stderr, "component:", err)
			os.Exit(1)
		}
		return
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Config is the benchmark's command line.
type Config struct {
	What      string
	Sidecars  []int
	Batch     int
	Idle      time.Duration
	Actors    []int
	Hosts     int
	InFlight  int
	State     bool
	Collector time.Duration
	Reminders int
	Subs      int
	Spread    time.Duration
	Calls     int
	KeepLogs  bool
}

func parse(args []string, stderr io.Writer) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("scale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.What, "what", "all", "what to measure: sidecars, actors, subs (reminders and subscriptions), ops (per-call Redis and Kafka operations) or all")
	sidecars := fs.String("sidecars", "10,50,200", "member counts of the sidecars figures")
	fs.IntVar(&c.Batch, "batch", 10, "members started at once")
	fs.DurationVar(&c.Idle, "idle", 10*time.Second, "window of the idle-cost figures")
	actors := fs.String("actors", "10000,100000", "actor instances touched once, per run")
	fs.IntVar(&c.Hosts, "hosts", 2, "sidecars hosting the actor types")
	fs.IntVar(&c.InFlight, "inflight", 64, "requests in flight when touching actors, creating reminders and subscriptions, and in ops")
	fs.BoolVar(&c.State, "state", false, "the actors' method writes one state key")
	fs.DurationVar(&c.Collector, "collector", 20*time.Second, "-actor_collector_interval of the actor hosts")
	fs.IntVar(&c.Reminders, "reminders", 10000, "reminders (0: none)")
	fs.IntVar(&c.Subs, "subscriptions", 10000, "subscriptions (0: none)")
	fs.DurationVar(&c.Spread, "spread", 10*time.Second, "the reminders' targets are spread over this")
	fs.IntVar(&c.Calls, "calls", 2000, "calls per ops figure")
	fs.BoolVar(&c.KeepLogs, "logs", false, "keep the kar processes' output in the temporary directory (printed)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	var err error
	if c.Sidecars, err = ints(*sidecars); err != nil {
		return c, fmt.Errorf("-sidecars: %w", err)
	}
	if c.Actors, err = ints(*actors); err != nil {
		return c, fmt.Errorf("-actors: %w", err)
	}
	switch c.What {
	case "sidecars", "actors", "subs", "ops", "all":
	default:
		return c, fmt.Errorf("-what %q: want sidecars, actors, subs, ops or all", c.What)
	}
	if c.Batch < 1 || c.Hosts < 1 || c.InFlight < 1 || c.Calls < 1 || c.Idle <= 0 || c.Spread <= 0 {
		return c, fmt.Errorf("-batch, -hosts, -inflight, -calls, -idle and -spread must be positive")
	}
	return c, nil
}

// ints parses "10,50,200": ascending positive counts.
func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive count", f)
		}
		if len(out) > 0 && n <= out[len(out)-1] {
			return nil, fmt.Errorf("counts must ascend: %s", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parse(args, stderr)
	if err != nil {
		if err != flag.ErrHelp {
			fmt.Fprintln(stderr, "scale:", err)
		}
		return 2
	}
	kar, err := karBin()
	if err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 2
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, c, kar, self, stdout); err != nil {
		fmt.Fprintln(stderr, "scale:", err)
		return 1
	}
	return 0
}

// Run measures what c asks and prints the figures.
func Run(ctx context.Context, c Config, kar, self string, w io.Writer) error {
	e, err := NewEnv(ctx, kar, self, c.KeepLogs)
	if err != nil {
		return err
	}
	defer e.Close()
	if c.KeepLogs {
		fmt.Fprintln(w, "logs in", e.dir)
	}
	fmt.Fprintf(w, "kar scale benchmark, %s, %d CPUs, load average %s\n", time.Now().UTC().Format(time.RFC3339), numCPU(), loadAvg())
	all := c.What == "all"
	if all || c.What == "ops" {
		fmt.Fprintf(w, "per call (caller and server sidecar; %d calls each, less the idle mesh's own work):\n", c.Calls)
		pts, err := Ops(ctx, e, c.Calls, c.InFlight, c.Idle)
		for _, p := range pts {
			p.Print(w)
		}
		if err != nil {
			return fmt.Errorf("ops: %w", err)
		}
	}
	if all || c.What == "actors" {
		pts, err := Actors(ctx, e, ActorsOptions{Counts: c.Actors, Hosts: c.Hosts, InFlight: c.InFlight, State: c.State, Collector: c.Collector})
		for _, p := range pts {
			p.Print(w)
		}
		if err != nil {
			return fmt.Errorf("actors: %w", err)
		}
	}
	if all || c.What == "subs" {
		pts, err := Subs(ctx, e, SubsOptions{Reminders: c.Reminders, Subscriptions: c.Subs, Hosts: c.Hosts, InFlight: c.InFlight, Idle: c.Idle, Spread: c.Spread})
		for _, p := range pts {
			p.Print(w)
		}
		if err != nil {
			return fmt.Errorf("subs: %w", err)
		}
	}
	if all || c.What == "sidecars" {
		if err := e.rdb.FlushAll(ctx).Err(); err != nil {
			return err
		}
		pts, err := Sidecars(ctx, e, SidecarsOptions{Sizes: c.Sidecars, Batch: c.Batch, Idle: c.Idle})
		for _, p := range pts {
			p.Print(w)
		}
		if err != nil {
			return fmt.Errorf("sidecars: %w", err)
		}
	}
	return nil
}

// karBin is $KAR_BIN, else bin/kar.
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

func numCPU() int {
	b, _ := os.ReadFile("/proc/cpuinfo")
	return strings.Count(string(b), "processor\t:")
}

func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func splitHostPort(addr string) (string, int, error) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	n, err := strconv.Atoi(p)
	return h, n, err
}
