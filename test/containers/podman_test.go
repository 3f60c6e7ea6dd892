// Package containers runs kar's images for real in podman: it builds every
// image of the Dockerfile (on local stand-ins for the public base images,
// since registries are unreachable here), runs the hello world with the
// sidecar in the container, drives scripts/docker-compose-*.sh through
// podman's Docker API, and plays the Pod manifests.
//
// The tests skip unless KAR_CONTAINERS=1, so that `go test ./...` on a
// machine without a container engine runs none of them by accident;
// scripts/test-containers.sh installs podman and sets it.
package containers

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// repoRoot is the build context: the repository, two levels up.
const repoRoot = "../.."

// Podman runs podman with the tests' containers.conf.
type Podman struct {
	conf string // absolute path of containers.conf
}

// requirePodman skips the test unless container tests were asked for, and
// fails it when they were but podman is missing.
func requirePodman(t testing.TB) *Podman {
	t.Helper()
	if os.Getenv("KAR_CONTAINERS") != "1" {
		t.Skip("container tests are off: run scripts/test-containers.sh (or set KAR_CONTAINERS=1 with podman, runc, mmdebstrap installed)")
	}
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("KAR_CONTAINERS=1 but podman is not on PATH (scripts/test-containers.sh installs it): %v", err)
	}
	conf, err := filepath.Abs("containers.conf")
	if err != nil {
		t.Fatal(err)
	}
	return &Podman{conf: conf}
}

// Env is the environment of podman and of tools that call it.
func (p *Podman) Env() []string {
	return append(os.Environ(), "CONTAINERS_CONF="+p.conf)
}

// Run runs podman args within timeout and returns its stdout; an error
// carries stderr.
func (p *Podman) Run(ctx context.Context, timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = p.Env()
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w\n%s%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// Must is Run that fails the test on error.
func (p *Podman) Must(t testing.TB, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := p.Run(context.Background(), timeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// ImageExists tells whether a local image of that name exists.
func (p *Podman) ImageExists(name string) bool {
	_, err := p.Run(context.Background(), 30*time.Second, "image", "exists", name)
	return err == nil
}

// RemoveContainerAtEnd force-removes a container at the end of the test, also
// when the test failed, so that no container and no port is left behind.
func (p *Podman) RemoveContainerAtEnd(t testing.TB, name string) {
	t.Cleanup(func() {
		if _, err := p.Run(context.Background(), 60*time.Second, "rm", "-f", "-t", "2", "--ignore", name); err != nil {
			t.Errorf("removing container %s: %v", name, err)
		}
	})
}

// uniqueName is a container name no other run uses.
func uniqueName(prefix string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return prefix + "-" + hex.EncodeToString(b)
}
