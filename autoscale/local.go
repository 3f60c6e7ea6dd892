package autoscale

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// Local runs the replicas of one component on this machine (`kar
// autoscale`): each a `kar run` process with ports of its own, started
// and stopped to the count Set is given. A replica is stopped as kar run
// stops on SIGTERM: it leaves the mesh and hands back what it holds; one
// that has not exited after StopTimeout is killed with its process group.
type Local struct {
	Kar         string   // the kar binary
	Run         []string // kar run's flags: -app A -service S ...
	Cmd         []string // the component: CMD ARGS
	Env         []string // added to this process's environment
	Out         io.Writer
	StopTimeout time.Duration

	mu    sync.Mutex
	procs []*replica
}

type replica struct {
	cmd  *exec.Cmd
	done chan struct{}
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

// Set starts or stops replicas until n run; the newest stop first.
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
	l.mu.Unlock()
	l.stop(stop)
	return errors.Join(errs...)
}

// Close stops every replica.
func (l *Local) Close() {
	l.mu.Lock()
	stop := l.procs
	l.procs = nil
	l.mu.Unlock()
	l.stop(stop)
}

func (l *Local) start() (*replica, error) {
	appPort, err := freePort()
	if err != nil {
		return nil, err
	}
	runtimePort, err := freePort()
	if err != nil {
		return nil, err
	}
	args := append([]string{"run", "-app_port", strconv.Itoa(appPort), "-runtime_port", strconv.Itoa(runtimePort)}, l.Run...)
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
	r := &replica{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(r.done)
	}()
	return r, nil
}

// stop stops the replicas, in parallel: SIGTERM, then the group is killed
// after StopTimeout.
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
			r.cmd.Process.Signal(syscall.SIGTERM)
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

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("no free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
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
