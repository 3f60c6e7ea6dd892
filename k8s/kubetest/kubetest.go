// Package kubetest starts a real Kubernetes API server for tests: etcd (the
// Debian package etcd-server) and kube-apiserver built from the Go module
// proxy by the separate module in test/kube, cached under
// $HOME/.cache/kar so only the first run pays the build. No scheduler or
// kubelet runs: Pods stay Pending, which is all an admission test needs.
package kubetest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"github.com/kar-runtime/kar/internal/ports"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/k8s/certs"
)

// Version of kube-apiserver built; its minor matches k8s.io/client-go in go.mod.
const Version = "v1.29.6"

// Cluster is a running etcd + kube-apiserver.
type Cluster struct {
	URL        string
	Token      string
	Kubeconfig string
}

// APIServerBinary returns a kube-apiserver binary: $KAR_KUBE_APISERVER if
// set, else the cached build, else it builds one (several minutes, once).
func APIServerBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KAR_KUBE_APISERVER"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("KAR_KUBE_APISERVER=%s: %v", p, err)
		}
		return p
	}
	cache := os.Getenv("KAR_CACHE_DIR")
	if cache == "" {
		home, err := os.UserCacheDir()
		if err != nil {
			t.Fatalf("no cache directory for the kube-apiserver build (set KAR_CACHE_DIR): %v", err)
		}
		cache = filepath.Join(home, "kar")
	}
	bin := filepath.Join(cache, "kube-apiserver-"+Version)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	// A cold build takes minutes: rather than die in the middle of it at
	// go test's default 10-minute timeout, say what to do.
	if tt, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if d, ok := tt.Deadline(); ok && time.Until(d) < 12*time.Minute {
			t.Fatalf("kube-apiserver %s is not built yet (%s) and a cold build (about 7 minutes on 2 cores) may not fit in this test's timeout: run test/kube/build.sh once, or go test -timeout 30m", Version, bin)
		}
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	// Two test binaries may want it at once: one builds, the other waits.
	lock, err := os.OpenFile(bin+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	_, self, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(self), "..", "..", "test", "kube", "build.sh")
	t.Logf("building kube-apiserver %s into %s (first run only; several minutes)", Version, bin)
	cmd := exec.Command(script, bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building kube-apiserver with %s: %v\n%s", script, err, out)
	}
	return bin
}

// Start runs etcd and kube-apiserver on free ports until the test ends.
func Start(t testing.TB) *Cluster {
	t.Helper()
	etcdBin, err := exec.LookPath("etcd")
	if err != nil {
		t.Fatalf("etcd is not on PATH: install it with `apt-get install -y etcd-server` (.ci/run does)")
	}
	apiserver := APIServerBinary(t)
	dir := t.TempDir()

	var etcdURL string
	for attempt := 0; ; attempt++ {
		client, peer := freePort(t), freePort(t)
		etcdURL = "http://127.0.0.1:" + strconv.Itoa(client)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
		data := filepath.Join(dir, fmt.Sprintf("etcd-%d", attempt))
		err := startProcess(t, "etcd", etcdBin, filepath.Join(dir, "etcd.log"),
			"--name", "kar-test", "--data-dir", data,
			"--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "kar-test="+peerURL, "--log-level", "warn")
		if err == nil {
			err = waitHTTP(etcdURL+"/health", nil, "", 30*time.Second)
		}
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("etcd did not start: %v (log: %s)", err, tail(filepath.Join(dir, "etcd.log")))
		}
	}

	pair, err := certs.New(time.Now(), "127.0.0.1", "localhost")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tokenBytes := make([]byte, 16)
	if _, err := rand.Read(tokenBytes); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(tokenBytes)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	saFile := write("sa.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: saDER}))
	tokens := write("tokens.csv", []byte(token+",admin,admin,system:masters\n"))
	certFile, keyFile := write("apiserver.crt", pair.Cert), write("apiserver.key", pair.Key)

	var url string
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		url = "https://127.0.0.1:" + strconv.Itoa(port)
		logFile := filepath.Join(dir, fmt.Sprintf("kube-apiserver-%d.log", attempt))
		err := startProcess(t, "kube-apiserver", apiserver, logFile,
			"--etcd-servers", etcdURL,
			"--etcd-prefix", "/registry-"+hex.EncodeToString(tokenBytes[:4]),
			"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
			"--secure-port", strconv.Itoa(port),
			"--tls-cert-file", certFile, "--tls-private-key-file", keyFile,
			"--cert-dir", filepath.Join(dir, "certs"),
			"--token-auth-file", tokens,
			"--authorization-mode", "AlwaysAllow",
			"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file", saFile, "--service-account-signing-key-file", saFile,
			"--service-cluster-ip-range", "10.96.0.0/16",
			// No controller manager creates the default ServiceAccount.
			"--disable-admission-plugins", "ServiceAccount",
			"--enable-admission-plugins", "NamespaceLifecycle,MutatingAdmissionWebhook,ValidatingAdmissionWebhook",
			"--enable-priority-and-fairness=false",
			"--endpoint-reconciler-type", "none",
			"--profiling=false",
			"--v", "1")
		if err == nil {
			err = waitHTTP(url+"/readyz", pair.CACert, token, 90*time.Second)
		}
		if err == nil {
			break
		}
		if attempt == 2 {
			t.Fatalf("kube-apiserver did not become ready: %v (log: %s)", err, tail(logFile))
		}
	}
	// The bootstrap controller makes the default namespace shortly after readyz.
	if err := waitHTTP(url+"/api/v1/namespaces/default", pair.CACert, token, 30*time.Second); err != nil {
		t.Fatalf("namespace default never appeared: %v", err)
	}

	kubeconfig := write("kubeconfig", []byte(fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: admin
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, url, base64.StdEncoding.EncodeToString(pair.CACert), token)))
	return &Cluster{URL: url, Token: token, Kubeconfig: kubeconfig}
}

// startProcess starts a server and stops it by PID when the test ends. An
// early exit (port taken) is reported as an error so the caller can retry.
func startProcess(t testing.TB, name, bin, logFile string, args ...string) error {
	t.Helper()
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		t.Fatalf("starting %s: %v", name, err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); log.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	select {
	case <-done:
		return fmt.Errorf("%s exited at once", name)
	case <-time.After(200 * time.Millisecond):
		return nil
	}
}

func waitHTTP(url string, ca []byte, token string, timeout time.Duration) error {
	tr := &http.Transport{}
	if ca != nil {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(ca)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("%s: %s", url, resp.Status)
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready after %v: %w", timeout, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort is a loopback port for etcd or kube-apiserver (package ports:
// below the ephemeral range, which the test's connections take ports from).
func freePort(t testing.TB) int {
	t.Helper()
	p, err := ports.Pick(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}
