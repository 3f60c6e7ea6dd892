package cetest

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// KarBinary is the kar binary to run: $KAR_BIN when set (scripts/test.sh
// builds it once), else the one build of ./cmd/kar per test binary run that
// internal/testenv makes.
func KarBinary(t testing.TB) string {
	t.Helper()
	p, err := filepath.Abs(testenv.KarBin(t))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// ModuleRoot is the directory holding go.mod.
func ModuleRoot(t testing.TB) string {
	t.Helper()
	b, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	return filepath.Dir(strings.TrimSpace(string(b)))
}

// Result is a finished process.
type Result struct {
	Code           int
	Stdout, Stderr string
}

// Run runs name with args and env (added to a minimal environment) and
// waits at most a minute; the process is killed by its PID on timeout.
func Run(t testing.TB, env []string, name string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Dir = t.TempDir() // no ibm-credentials.env around
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("%s: %v", name, err)
		}
		code = ee.ExitCode()
	}
	if ctx.Err() != nil {
		t.Fatalf("%s %v did not finish within a minute", name, args)
	}
	return Result{Code: code, Stdout: stdout.String(), Stderr: stderr.String()}
}
