package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// karBuild is the one build of ./cmd/kar per test binary run. It is the
// package's only mutable state, and unavoidable: tests of one binary share
// the build, and sync.OnceValues is how Go says "once per process".
var karBuild = sync.OnceValues(buildKar)

// KarBin is the path of the kar binary to test: $KAR_BIN when set (as
// scripts/test.sh does, having built it once for every package), else
// ./cmd/kar (with ./cmd/kar-cloud and ./cmd/kar-dev beside it) built once
// per test binary run.
//
// The build goes to a fixed path under the temporary directory, named by
// the module's location, and is renamed into place atomically: test
// binaries building at the same time do not clash, a running kar keeps its
// file, and nothing piles up in /tmp across runs.
func KarBin(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KAR_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("testenv: KAR_BIN=%s: %v", p, err)
		}
		return p
	}
	p, err := karBuild()
	if err != nil {
		t.Fatalf("testenv: cannot build kar: %v", err)
	}
	return p
}

func buildKar() (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256([]byte(root))
	dir := filepath.Join(os.TempDir(), "kar-testenv-"+hex.EncodeToString(sum[:6]))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// kar hands its deployment commands to kar-cloud next to it, and kar
	// dev to kar-dev.
	for _, name := range []string{"kar-cloud", "kar-dev", "kar"} {
		if err := buildInto(root, dir, name); err != nil {
			return "", err
		}
	}
	return filepath.Join(dir, "kar"), nil
}

func buildInto(root, dir, name string) error {
	tmp, err := os.CreateTemp(dir, name+"-*.tmp")
	if err != nil {
		return err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-o", tmp.Name(), "./cmd/"+name)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/%s in %s: %w\n%s", name, root, err, out)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, name))
}

// moduleRoot walks up from the test's directory to go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// RunKar runs the kar binary with args in env (plus PATH and HOME only)
// and returns its combined output and exit code.
func RunKar(t testing.TB, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(KarBin(t), args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}
