// Package launcher starts the component beside its sidecar, relays its
// output line by line with a timestamp and stream tag, forwards signals,
// and reports its exit code.
package launcher

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a running component.
type Process struct {
	cmd   *exec.Cmd
	relay sync.WaitGroup
	done  chan struct{}
	err   error // from Wait

	mu   sync.Mutex
	sent map[syscall.Signal]bool // signals forwarded to the component
}

// Start launches argv with env added to kar's own environment, relaying
// its stdout to stdout and its stderr to stderr as
// "YYYY/MM/DD HH:MM:SS.micro [STDOUT] line".
func Start(argv []string, env []string, stdout, stderr io.Writer) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("no command to run")
	}
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return nil, fmt.Errorf("cannot run %q: %w", argv[0], err)
	}
	cmd := exec.Command(path, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = os.Stdin
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errR, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot run %q: %w", argv[0], err)
	}
	p := &Process{cmd: cmd, done: make(chan struct{})}
	var mu sync.Mutex // one line at a time across both streams
	p.relay.Add(2)
	go relay(&p.relay, outR, stdout, "[STDOUT]", &mu)
	go relay(&p.relay, errR, stderr, "[STDERR]", &mu)
	go func() {
		// Read all output before Wait closes the pipes.
		p.relay.Wait()
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func relay(wg *sync.WaitGroup, r io.Reader, w io.Writer, tag string, mu *sync.Mutex) {
	defer wg.Done()
	sc := bufio.NewScanner(r)
	// The buffer starts small and grows with the longest line: two 64 KiB
	// buffers (stdout, stderr) were 128 KB of a sidecar's 3 MB live heap.
	sc.Buffer(make([]byte, 4*1024), 4*1024*1024)
	for sc.Scan() {
		line := time.Now().Format("2006/01/02 15:04:05.000000") + " " + tag + " " + sc.Text() + "\n"
		mu.Lock()
		io.WriteString(w, line)
		mu.Unlock()
	}
	// A line longer than the buffer: drain the rest so the child never blocks.
	io.Copy(io.Discard, r)
}

// exitCode is the component's exit code; a component that died from a
// signal kar forwarded to it (Ctrl-C, a SIGTERM to kar run, a shutdown)
// ended as asked: 0, as KAR reports it. Any other signal is 128+n.
func (p *Process) exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.mu.Lock()
			sent := p.sent[ws.Signal()]
			p.mu.Unlock()
			if sent {
				return 0
			}
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	}
	return 1
}

// Signaled tells the signal the component ended from, if it ended from
// one. It is valid after Done.
func (p *Process) Signaled() (syscall.Signal, bool) {
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal(), true
		}
	}
	return 0, false
}

// PID of the component.
func (p *Process) PID() int { return p.cmd.Process.Pid }

// Done is closed when the component has exited and its output is relayed.
func (p *Process) Done() <-chan struct{} { return p.done }

// ExitCode is valid after Done. It counts the signals forwarded until it
// is called: a Ctrl-C reaches the component and kar at the same time, and
// the component may be gone before kar has forwarded it.
func (p *Process) ExitCode() int { return p.exitCode(p.err) }

// Signal forwards sig to the component.
func (p *Process) Signal(sig os.Signal) error {
	p.Intend(sig)
	return p.cmd.Process.Signal(sig)
}

// Intend records sig as one kar received for the component and forwards
// (perhaps after draining the sidecar): the component ending from it is a
// clean exit, also when it got it first from elsewhere (Ctrl-C in a
// terminal signals the whole process group).
func (p *Process) Intend(sig os.Signal) {
	if s, ok := sig.(syscall.Signal); ok {
		p.mu.Lock()
		if p.sent == nil {
			p.sent = map[syscall.Signal]bool{}
		}
		p.sent[s] = true
		p.mu.Unlock()
	}
}
