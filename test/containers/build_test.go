package containers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// image is one image of the Dockerfile the tests build.
type image struct {
	name    string // localhost/kar-test/<name>:latest
	target  string // the Dockerfile stage
	example string // EXAMPLE build argument of the example stages
	shell   bool   // whether the image needs a shell (Node.js images come with one)
}

func images() []image {
	return []image{
		{name: "kar", target: "kar"},
		{name: "kar-injector", target: "kar-injector"},
		{name: "kar-scaler", target: "kar-scaler"},
		{name: "kar-dev", target: "kar-dev"},
		{name: "kar-js", target: "kar-js", shell: true},
		{name: "kar-go", target: "kar-go"},
		{name: "service-hello-js", target: "example-js", example: "service-hello-js", shell: true},
		{name: "service-hello-go", target: "example-go", example: "service-hello-go"},
	}
}

func (i image) ref() string { return "localhost/kar-test/" + i.name + ":latest" }

func imageNamed(t testing.TB, name string) image {
	t.Helper()
	for _, i := range images() {
		if i.name == name {
			return i
		}
	}
	t.Fatalf("no image %s", name)
	return image{}
}

// buildArgs are the stand-in bases for the Dockerfile's FROM arguments,
// built when missing, and the host's Go module cache as the first module
// proxy (a cold build then downloads nothing it already has).
func buildArgs(t testing.TB, p *Podman) []string {
	t.Helper()
	// The bases are built at the same time: mmdebstrap mostly waits on
	// downloads and dpkg.
	type built struct {
		arg, ref string
		took     time.Duration
		err      error
	}
	done := make(chan built)
	for arg, b := range bases() {
		dir := t.TempDir()
		go func() {
			ref, took, err := buildBase(p, b, dir)
			done <- built{arg, ref, took, err}
		}()
	}
	var args []string
	for range bases() {
		r := <-done
		switch {
		case r.err != nil:
			t.Error(r.err)
		case r.took > 0:
			t.Logf("base %s built in %s", r.ref, r.took.Round(time.Second))
		}
		args = append(args, "--build-arg", r.arg+"="+r.ref)
	}
	if t.Failed() {
		t.FailNow()
	}
	if out, err := exec.Command("go", "env", "GOMODCACHE").Output(); err == nil {
		dl := filepath.Join(strings.TrimSpace(string(out)), "cache", "download")
		if st, err := os.Stat(dl); err == nil && st.IsDir() {
			args = append(args, "--volume", dl+":/goproxy:ro",
				"--build-arg", "GOPROXY=file:///goproxy,https://proxy.golang.org,direct")
		}
	}
	return args
}

// build builds the image from the repository's Dockerfile and returns how
// long it took. Layers are cached by podman between runs.
func build(t testing.TB, p *Podman, i image, bargs []string) time.Duration {
	t.Helper()
	args := []string{"build", "--network=host", "--layers", "-f", filepath.Join(repoRoot, "Dockerfile"), "--target", i.target, "-t", i.ref()}
	args = append(args, bargs...)
	if i.example != "" {
		args = append(args, "--build-arg", "EXAMPLE="+i.example)
	}
	start := time.Now()
	p.Must(t, 20*time.Minute, append(args, repoRoot)...)
	return time.Since(start)
}

// ensureImage builds the image unless it exists (for tests run alone;
// TestImages always rebuilds, from cached layers when nothing changed).
func ensureImage(t testing.TB, p *Podman, name string) string {
	t.Helper()
	i := imageNamed(t, name)
	if !p.ImageExists(i.ref()) {
		build(t, p, i, buildArgs(t, p))
	}
	return i.ref()
}

// TestImages builds every image, then checks each: it runs as a numeric
// non-root user, has no shell unless it needs one, and `kar version` (the
// injector and the scaler: their usage) runs inside.
func TestImages(t *testing.T) {
	p := requirePodman(t)
	bargs := buildArgs(t, p)
	var summary []string
	for _, i := range images() {
		t.Run(i.name, func(t *testing.T) {
			took := build(t, p, i, bargs)
			inspect := p.Must(t, time.Minute, "image", "inspect", "--format", "{{.Size}} {{.Config.User}}", i.ref())
			var size int64
			var user string
			if _, err := fmt.Sscan(inspect, &size, &user); err != nil {
				t.Fatalf("image inspect %s: %q: %v", i.ref(), inspect, err)
			}
			summary = append(summary, fmt.Sprintf("%-18s %7.1f MB  built in %s", i.name, float64(size)/1e6, took.Round(100*time.Millisecond)))

			m := regexp.MustCompile(`^([0-9]+)(:[0-9]+)?$`).FindStringSubmatch(user)
			if uid, _ := strconv.Atoi(m1(m)); m == nil || uid == 0 {
				t.Errorf("%s runs as user %q: want a numeric non-root uid", i.ref(), user)
			}

			var run []string
			switch i.name {
			case "kar", "kar-dev":
				run = []string{"version"}
			case "kar-injector", "kar-scaler":
				run = []string{"-h"}
			default:
				run = []string{"kar", "version"}
			}
			ctx := context.Background()
			out, err := p.Run(ctx, time.Minute, append([]string{"run", "--rm", "--network=none", i.ref()}, run...)...)
			if err != nil {
				t.Fatalf("running %s: %v", i.ref(), err)
			}
			if run[len(run)-1] == "version" && !strings.HasPrefix(out, "kar version ") {
				t.Errorf("%s: kar version printed %q", i.ref(), out)
			}

			_, err = p.Run(ctx, time.Minute, "run", "--rm", "--network=none", "--entrypoint", "/bin/sh", i.ref(), "-c", "true")
			if hasShell := err == nil; hasShell != i.shell {
				t.Errorf("%s: has a shell: %v, want %v", i.ref(), hasShell, i.shell)
			}
		})
	}
	t.Logf("images (podman image inspect .Size; build time of this run):\n%s", strings.Join(summary, "\n"))
}

func m1(m []string) string {
	if m == nil {
		return ""
	}
	return m[1]
}
