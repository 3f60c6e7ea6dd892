package sidecar

import (
	"io"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/sidecar/launcher"
)

// A Ctrl-C in a terminal signals kar and the component together, and on a
// loaded machine the component can be gone before kar's own copy of the
// signal is delivered. kar still ends as KAR does: 0, the component having
// ended as asked. (TestCtrlC in test/mesh met this once in CI: exit 130.)
func TestCtrlCThatReachesKarAfterTheComponentEnded(t *testing.T) {
	proc := sleeper(t)
	sigs := make(chan os.Signal, 1)
	syscall.Kill(proc.PID(), syscall.SIGINT) // the component's copy
	<-proc.Done()
	time.AfterFunc(50*time.Millisecond, func() { sigs <- syscall.SIGINT }) // kar's, late
	if code := waitForExit(nil, proc, sigs, nil, slog.New(slog.DiscardHandler)); code != 0 {
		t.Fatalf("exit %d, want 0", code)
	}
}

// A component that a SIGINT from elsewhere ended, kar having had none, ended
// from a signal nobody asked kar for: 128+2.
func TestComponentInterruptedBehindKarsBack(t *testing.T) {
	proc := sleeper(t)
	syscall.Kill(proc.PID(), syscall.SIGINT)
	if code := waitForExit(nil, proc, make(chan os.Signal, 1), nil, slog.New(slog.DiscardHandler)); code != 130 {
		t.Fatalf("exit %d, want 130", code)
	}
}

func sleeper(t *testing.T) *launcher.Process {
	t.Helper()
	proc, err := launcher.Start([]string{"sleep", "30"}, nil, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proc.Signal(syscall.SIGKILL); <-proc.Done() })
	return proc
}
