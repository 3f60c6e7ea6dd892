package launcher

import (
	"bytes"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var line = regexp.MustCompile(`^\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2}\.\d{6} \[(STDOUT|STDERR)\] (.*)$`)

func TestRelayAndExitCode(t *testing.T) {
	var out, errb syncBuf
	p, err := Start([]string{"sh", "-c", `echo one; echo two >&2; printf 'no newline'; exit 3`}, []string{"X=1"}, &out, &errb)
	if err != nil {
		t.Fatal(err)
	}
	<-p.Done()
	if p.ExitCode() != 3 {
		t.Errorf("exit code %d, want 3", p.ExitCode())
	}
	outLines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(outLines) != 2 || !line.MatchString(outLines[0]) || !strings.HasSuffix(outLines[0], "[STDOUT] one") || !strings.HasSuffix(outLines[1], "[STDOUT] no newline") {
		t.Errorf("stdout relay:\n%s", out.String())
	}
	if !strings.HasSuffix(strings.TrimSpace(errb.String()), "[STDERR] two") {
		t.Errorf("stderr relay:\n%s", errb.String())
	}
}

// A component that dies from a signal kar forwarded (Ctrl-C, SIGTERM)
// ended as asked: exit code 0, as KAR reports it; a signal from elsewhere
// is 128+n.
func TestSignalExitCode(t *testing.T) {
	cases := []struct {
		forward, kill syscall.Signal
		want          int
	}{
		{syscall.SIGINT, 0, 0},
		{syscall.SIGTERM, 0, 0},
		{0, syscall.SIGKILL, 128 + int(syscall.SIGKILL)},
		{0, syscall.SIGTERM, 128 + int(syscall.SIGTERM)},
	}
	for _, c := range cases {
		var out syncBuf
		p, err := Start([]string{"sh", "-c", `echo ready; exec sleep 30`}, nil, &out, &out)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(out.String(), "ready") && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if c.forward != 0 {
			p.Signal(c.forward)
		} else {
			syscall.Kill(p.PID(), c.kill)
		}
		<-p.Done()
		if p.ExitCode() != c.want {
			t.Errorf("forward %v / kill %v: exit code %d, want %d", c.forward, c.kill, p.ExitCode(), c.want)
		}
	}
}

func TestStartErrors(t *testing.T) {
	var out syncBuf
	if _, err := Start(nil, nil, &out, &out); err == nil {
		t.Error("empty command accepted")
	}
	if _, err := Start([]string{"no-such-command-kar"}, nil, &out, &out); err == nil || !strings.Contains(err.Error(), "no-such-command-kar") {
		t.Errorf("missing command: %v", err)
	}
}
