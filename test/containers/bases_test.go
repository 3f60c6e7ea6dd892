package containers

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// A base is a local stand-in for a public base image, built without a
// registry: a root file system (from Debian packages with mmdebstrap, or
// written here) imported with `podman import`. The image's tag is a hash of
// its recipe, so an image that exists is reused and a changed recipe builds
// a new one.
type base struct {
	repo    string   // e.g. localhost/kar-base/node
	stands  string   // the public image it stands in for
	include []string // Debian packages on top of minbase; nil: no Debian (rootfs writes the tree)
	hooks   []string // mmdebstrap --customize-hook commands ($1 is the root)
	rootfs  func(path string) error
	changes []string // podman import --change instructions
}

const debianSuite = "bookworm"

// goRoot is the host's Go toolchain, copied into the golang stand-in:
// Debian bookworm's golang is older than go.mod asks for.
func goRoot() string { return runtime.GOROOT() }

// hostCAHook gives a Debian stand-in the host's CA bundle, so that builds
// behind a TLS-intercepting proxy (as here) reach the npm registry and the
// Go module proxy; NODE_EXTRA_CA_CERTS makes Node.js and npm use it.
const hostCAHook = `cp ` + hostCABundle + ` "$1/etc/ssl/certs/ca-certificates.crt"`

func bases() map[string]base {
	const path = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	return map[string]base{
		"GO_IMAGE": {
			repo:    "localhost/kar-base/golang",
			stands:  "golang:1.26-bookworm",
			include: []string{"ca-certificates"},
			hooks: []string{
				fmt.Sprintf(`mkdir -p "$1/usr/local/go" && tar -C %q -c . | tar -C "$1/usr/local/go" -x`, goRoot()),
				hostCAHook,
			},
			changes: []string{
				"ENV PATH=/go/bin:/usr/local/go/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
				"ENV GOPATH=/go", "ENV GOTOOLCHAIN=local", "WORKDIR /go",
			},
		},
		"NODE_IMAGE": {
			repo:    "localhost/kar-base/node",
			stands:  "node:20-bookworm-slim",
			include: []string{"nodejs", "npm", "ca-certificates"},
			// The node image's user: uid and gid 1000, named node.
			hooks:   []string{`chroot "$1" useradd --uid 1000 --user-group --create-home --shell /bin/sh node`, hostCAHook},
			changes: []string{"ENV " + path, "ENV NODE_EXTRA_CA_CERTS=" + hostCABundle, `CMD ["node"]`},
		},
		"STATIC_IMAGE": {
			repo:    "localhost/kar-base/static",
			stands:  "gcr.io/distroless/static-debian12:nonroot",
			rootfs:  writeStaticRoot,
			changes: []string{"ENV " + path, "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt", "USER 65532:65532", "WORKDIR /home/nonroot"},
		},
	}
}

// servicesBase stands in for redis:7.2 in the compose test (redis-server,
// redis-cli, a user redis) and is the base of its Kafka stand-in (socat).
func servicesBase() base {
	return base{
		repo:    "localhost/kar-base/services",
		stands:  "redis:7.2",
		include: []string{"redis-server", "socat", "ca-certificates"},
		hooks:   []string{hostCAHook},
		changes: []string{"ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", `CMD ["redis-server"]`},
	}
}

// ref is the image reference of the base: its recipe's hash as the tag.
func (b base) ref() string {
	h := sha256.New()
	fmt.Fprintln(h, debianSuite, b.include, b.hooks, b.changes, b.rootfs != nil)
	// Every base copies the host's CA bundle.
	if ca, err := os.ReadFile(hostCABundle); err == nil {
		h.Write(ca)
	}
	if b.repo == "localhost/kar-base/golang" {
		fmt.Fprintln(h, runtime.Version())
	}
	return b.repo + ":" + hex.EncodeToString(h.Sum(nil))[:12]
}

// ensureBase returns the reference of the base image, building it unless
// it exists, and how long that took (0 when reused).
func ensureBase(t testing.TB, p *Podman, b base) (string, time.Duration) {
	t.Helper()
	ref, took, err := buildBase(p, b, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return ref, took
}

// buildBase builds the base unless it exists, in dir.
func buildBase(p *Podman, b base, dir string) (string, time.Duration, error) {
	ref := b.ref()
	if p.ImageExists(ref) {
		return ref, 0, nil
	}
	start := time.Now()
	tarball := filepath.Join(dir, "rootfs.tar")
	defer os.Remove(tarball)
	if b.rootfs != nil {
		if err := b.rootfs(tarball); err != nil {
			return "", 0, fmt.Errorf("%s: writing the root file system: %w", b.repo, err)
		}
	} else {
		args := []string{"--variant=minbase", "--quiet", "--include=" + strings.Join(b.include, ",")}
		for _, hook := range b.hooks {
			args = append(args, "--customize-hook="+hook)
		}
		args = append(args, debianSuite, tarball)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "mmdebstrap", args...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", 0, fmt.Errorf("%s: mmdebstrap %s: %w\n%s", b.repo, strings.Join(args, " "), err, out)
		}
	}
	args := []string{"import"}
	for _, c := range b.changes {
		args = append(args, "--change", c)
	}
	args = append(args, "--message", "local stand-in for "+b.stands, tarball, ref)
	if _, err := p.Run(context.Background(), 5*time.Minute, args...); err != nil {
		return "", 0, err
	}
	return ref, time.Since(start), nil
}

const hostCABundle = "/etc/ssl/certs/ca-certificates.crt"

// writeStaticRoot writes what distroless/static holds: /etc/passwd and
// /etc/group with root, nobody and nonroot (65532), their homes, /tmp and
// the CA certificates. No shell, no libc: static binaries only.
func writeStaticRoot(path string) error {
	ca, err := os.ReadFile(hostCABundle)
	if err != nil {
		return fmt.Errorf("the CA bundle (Debian: ca-certificates): %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := tar.NewWriter(f)
	now := time.Now()
	dir := func(name string, mode int64, uid int) error {
		return w.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name + "/", Mode: mode, Uid: uid, Gid: uid, ModTime: now})
	}
	file := func(name string, mode int64, body []byte) error {
		if err := w.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: now}); err != nil {
			return err
		}
		_, err := w.Write(body)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc", 0o755, 0) },
		func() error { return dir("etc/ssl", 0o755, 0) },
		func() error { return dir("etc/ssl/certs", 0o755, 0) },
		func() error { return dir("home", 0o755, 0) },
		func() error { return dir("home/nonroot", 0o700, 65532) },
		func() error { return dir("root", 0o700, 0) },
		func() error { return dir("tmp", 0o1777, 0) },
		func() error {
			return file("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/sbin/nologin\n"+
				"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"+
				"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"))
		},
		func() error {
			return file("etc/group", 0o644, []byte("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n"))
		},
		func() error { return file("etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n")) },
		func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, ca) },
		w.Close,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return f.Close()
}
