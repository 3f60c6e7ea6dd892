package testenv

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Proc is a process started by Start: its own process group, its output
// captured line by line, stopped by its PID when the test ends.
type Proc struct {
	name string
	cmd  *exec.Cmd
	out  *output

	exited   chan struct{} // closed once cmd.Wait returned
	exitCode int
	waitErr  error
}

// Start launches args[0] with args[1:] in dir ("" = the test's directory),
// with the test process's environment minus its KAFKA_*, REDIS_* and KAR_*
// variables (a developer's shell must not leak into a test), plus env
// (usually Backend's Env() and test-specific settings). stdout and
// stderr are captured (Output, WaitOutput) and logged with t.Logf, each
// line prefixed by name. The whole process group is killed in t.Cleanup
// if it still runs.
func Start(t testing.TB, name string, env []string, dir string, args ...string) *Proc {
	t.Helper()
	if len(args) == 0 {
		t.Fatalf("testenv.Start(%s): no command given", name)
	}
	sink := &tlogSink{t: t}
	p := &Proc{name: name, out: newOutput(name, sink), exited: make(chan struct{})}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(hermeticEnviron(), env...)
	cmd.Stdout = p.out.writer("")
	cmd.Stderr = p.out.writer("stderr ")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A grandchild that outlives the process may hold its output pipes
	// open; do not let Wait block on that.
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatalf("testenv.Start(%s): %v", name, err)
	}
	p.cmd = cmd
	go func() {
		err := cmd.Wait()
		p.exitCode, p.waitErr = exitStatus(cmd, err)
		p.out.flush()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.Kill()
		select {
		case <-p.exited:
		case <-time.After(10 * time.Second):
			t.Errorf("testenv: %s (pid %d) did not exit 10s after SIGKILL", name, p.PID())
		}
		sink.close()
	})
	return p
}

// exitStatus turns Wait's result into an exit code: the process's own, or
// 128+signal when a signal ended it, as a shell reports it.
func exitStatus(cmd *exec.Cmd, err error) (int, error) {
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		// An I/O error after exit (WaitDelay) still has a ProcessState.
		if cmd.ProcessState == nil {
			return -1, err
		}
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}

// PID is the process id (also its process group id).
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Signal sends sig to the process only (not its group): what a supervisor
// such as Kubernetes does, and what `kar run` must forward itself.
func (p *Proc) Signal(sig syscall.Signal) error {
	if p.Exited() {
		return nil
	}
	return p.cmd.Process.Signal(sig)
}

// Kill sends SIGKILL to the whole process group and to every descendant
// found in /proc, so a child that made its own process group (as a
// supervisor may do for the component it runs) dies too.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	pid := p.cmd.Process.Pid
	// Collected before the kill: once the parent is gone its children are
	// re-parented and no longer found under it.
	desc := descendants(pid)
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	for _, d := range desc {
		_ = syscall.Kill(d, syscall.SIGKILL)
	}
}

// Exited reports whether the process has ended and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to end and returns its exit
// code (128+N when signal N ended it).
func (p *Proc) Wait(timeout time.Duration) (exitCode int, err error) {
	select {
	case <-p.exited:
		return p.exitCode, p.waitErr
	case <-time.After(timeout):
		return -1, fmt.Errorf("%s (pid %d) still running after %s", p.name, p.PID(), timeout)
	}
}

// Output is everything the process printed so far, stdout and stderr
// interleaved as they arrived, stderr lines prefixed with "stderr ".
func (p *Proc) Output() string { return p.out.String() }

// WaitOutput waits until the output holds substring, failing the test with
// the output if it does not appear within timeout or the process ends
// without printing it.
func (p *Proc) WaitOutput(t testing.TB, substring string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		changed := p.out.changed()
		if strings.Contains(p.out.String(), substring) {
			return
		}
		select {
		case <-changed:
		case <-p.exited:
			if strings.Contains(p.out.String(), substring) {
				return
			}
			t.Fatalf("testenv: %s exited (code %d) without printing %q; its output:\n%s", p.name, p.exitCode, substring, p.Output())
		case <-deadline.C:
			t.Fatalf("testenv: %s did not print %q within %s; its output:\n%s", p.name, substring, timeout, p.Output())
		}
	}
}

// output is a process's captured lines, safe for concurrent use.
type output struct {
	name string
	sink *tlogSink

	mu      sync.Mutex
	buf     bytes.Buffer
	notify  chan struct{} // closed and replaced at every new line
	pending map[string]*bytes.Buffer
}

func newOutput(name string, sink *tlogSink) *output {
	return &output{name: name, sink: sink, notify: make(chan struct{}), pending: map[string]*bytes.Buffer{}}
}

func (o *output) changed() <-chan struct{} {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.notify
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

type outputWriter struct {
	o      *output
	prefix string
}

func (o *output) writer(prefix string) *outputWriter {
	o.pending[prefix] = &bytes.Buffer{}
	return &outputWriter{o: o, prefix: prefix}
}

// Write keeps whole lines only, so lines of stdout and stderr never mix.
func (w *outputWriter) Write(b []byte) (int, error) {
	o := w.o
	o.mu.Lock()
	defer o.mu.Unlock()
	pend := o.pending[w.prefix]
	pend.Write(b)
	for {
		i := bytes.IndexByte(pend.Bytes(), '\n')
		if i < 0 {
			break
		}
		o.addLineLocked(w.prefix, string(pend.Next(i + 1)[:i]))
	}
	return len(b), nil
}

// flush keeps a last line that had no newline.
func (o *output) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	for prefix, pend := range o.pending {
		if pend.Len() > 0 {
			o.addLineLocked(prefix, pend.String())
			pend.Reset()
		}
	}
}

func (o *output) addLineLocked(prefix, line string) {
	o.buf.WriteString(prefix + line + "\n")
	o.sink.logf("%s: %s%s", o.name, prefix, line)
	close(o.notify)
	o.notify = make(chan struct{})
}

// hermeticEnviron is the test process's environment without the variables
// that configure kar.
func hermeticEnviron() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "KAFKA_") || strings.HasPrefix(kv, "REDIS_") || strings.HasPrefix(kv, "KAR_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// descendants lists the processes below pid, from /proc (empty where there
// is no /proc).
func descendants(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// "pid (comm) state ppid ...": comm may hold spaces and parentheses.
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], child)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		for _, c := range children[next] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}
