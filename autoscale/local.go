package autoscale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Local runs the replicas of one component on this machine (`kar
// autoscale`): each a `kar run` process with ports of its own, started
// and stopped to the count Set is given. A replica is stopped as a Pod's
// preStop hook stops an injected sidecar: POST /kar/v1/system/shutdown
// makes its sidecar stop routing to it and gives the component a grace
// period to finish the requests it runs before SIGTERM, then it leaves
// the mesh and hands back what it holds. (SIGTERM to kar run reaches the
// component at once: a request it was running would be handed back and
// run again.) One that has not exited after StopTimeout is killed with its
// process group.
type Local struct {
	Kar         string   // the kar binary
	Run         []string // kar run's flags: -app A -service S ...
	Cmd         []string // the component: CMD ARGS
	Env         []string // added to this process's environment
	Out         io.Writer
	StopTimeout time.Duration

	mu       sync.Mutex
	procs    []*replica
	stopping sync.WaitGroup // replicas being stopped (Close waits)
}

type replica struct {
	cmd   *exec.Cmd
	done  chan struct{}
	ports [2]int // app, runtime
}

// Replicas is the number of replicas running (or starting).
func (l *Local) Replicas() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reapLocked()
	return len(l.procs)
}

// reapLocked forgets replicas that exited by themselves.
func (l *Local) reapLocked() {
	live := l.procs[:0]
	for _, r := range l.procs {
		select {
		case <-r.done:
		default:
			live = append(live, r)
		}
	}
	l.procs = live
}

// Set starts or stops replicas until n run; the newest stop first. It
// does not wait for the replicas it stops, which drain for a while: the
// loop must be free to scale up again at once (a request may come for a
// target just scaled to zero).
func (l *Local) Set(ctx context.Context, n int, _ Input) error {
	l.mu.Lock()
	l.reapLocked()
	var stop []*replica
	for len(l.procs) > n {
		stop = append(stop, l.procs[len(l.procs)-1])
		l.procs = l.procs[:len(l.procs)-1]
	}
	var errs []error
	for len(l.procs) < n {
		r, err := l.start()
		if err != nil {
			errs = append(errs, err)
			break
		}
		l.procs = append(l.procs, r)
	}
	l.stopping.Add(1)
	l.mu.Unlock()
	go func() {
		defer l.stopping.Done()
		l.stop(stop)
	}()
	return errors.Join(errs...)
}

// Close stops every replica, and waits for those being stopped.
func (l *Local) Close() {
	l.mu.Lock()
	stop := l.procs
	l.procs = nil
	l.mu.Unlock()
	l.stop(stop)
	l.stopping.Wait()
}

func (l *Local) start() (*replica, error) {
	ports, err := l.freePortsLocked()
	if err != nil {
		return nil, err
	}
	args := append([]string{"run", "-app_port", strconv.Itoa(ports[0]), "-runtime_port", strconv.Itoa(ports[1])}, l.Run...)
	args = append(append(args, "--"), l.Cmd...)
	cmd := exec.Command(l.Kar, args...)
	cmd.Env = append(os.Environ(), l.Env...)
	cmd.Stdout, cmd.Stderr = l.Out, l.Out
	// A group of its own: an interrupt at the terminal reaches kar
	// autoscale, which stops the replicas in order, not all at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start a replica: %w", err)
	}
	r := &replica{cmd: cmd, done: make(chan struct{}), ports: ports}
	go func() {
		cmd.Wait()
		close(r.done)
	}()
	return r, nil
}

// stop stops the replicas, in parallel: a shutdown request (SIGTERM if
// the sidecar does not take it), then the group is killed after
// StopTimeout.
func (l *Local) stop(rs []*replica) {
	timeout := l.StopTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !shutdown(r.ports[1]) {
				r.cmd.Process.Signal(syscall.SIGTERM)
			}
			select {
			case <-r.done:
			case <-time.After(timeout):
				syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
				<-r.done
			}
		}()
	}
	wg.Wait()
}

// shutdown asks the sidecar on port to shut down (drain), and says
// whether it took the request.
func shutdown(port int) bool {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Post(fmt.Sprintf("http://127.0.0.1:%d/kar/v1/system/shutdown", port), "text/plain", nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < 300
}

// freePortsLocked picks a replica's app and runtime ports: free now, not
// each other (both are held open while the second is chosen: a port just
// closed may be handed out again at once, and a sidecar whose app port is
// its own runtime port answers its calls itself), and not those of a
// running replica that may not have bound them yet.
func (l *Local) freePortsLocked() ([2]int, error) {
	used := map[int]bool{}
	for _, r := range l.procs {
		used[r.ports[0]], used[r.ports[1]] = true, true
	}
	var out [2]int
	var held []net.Listener
	defer func() {
		for _, ln := range held {
			ln.Close()
		}
	}()
	for i := 0; i < 2; {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return out, fmt.Errorf("no free port: %w", err)
		}
		held = append(held, ln)
		if p := ln.Addr().(*net.TCPAddr).Port; !used[p] {
			out[i] = p
			i++
		}
		if len(held) > 64 {
			return out, fmt.Errorf("no free port apart from the replicas' %d", len(used))
		}
	}
	return out, nil
}

// RunLocal is `kar autoscale`: the policy of f over the load src reads,
// applied to local replicas of l until ctx ends; then they are stopped.
func RunLocal(ctx context.Context, src Reader, f *Flags, l *Local, log *slog.Logger) error {
	t, err := f.Validate()
	if err != nil {
		return err
	}
	s, err := NewScaler(f.Policy)
	if err != nil {
		return err
	}
	if t.Type == "service" {
		l.Run = append([]string{"-app", t.App, "-service", t.Name}, l.Run...)
	} else {
		l.Run = append([]string{"-app", t.App, "-actors", t.Name}, l.Run...)
	}
	defer l.Close()
	// From -1: the first poll starts the minimum even with no load.
	err = Loop(ctx, src, t, s, f.Poll, -1, l.Set, log)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
