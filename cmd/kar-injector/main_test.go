package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"

	"github.com/kar-runtime/kar/k8s/certs"
)

// TestBinaryContract runs the real kar-injector process: flags, AdmissionReview
// v1 at POST /inject-sidecar over TLS answered with a JSONPatch, clean exit on SIGTERM.
func TestBinaryContract(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "kar-injector")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}

	// Missing flags: a clear message, exit 2.
	out, err := exec.Command(bin).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || !strings.Contains(string(out), "-tls_cert_file and -tls_private_key_file are required") {
		t.Fatalf("no flags: %v %s", err, out)
	}

	pair, err := certs.New(time.Now(), "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pair.Cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pair.Key, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	var logs bytes.Buffer
	cmd := exec.Command(bin, "-tls_cert_file", certFile, "-tls_private_key_file", keyFile, "-port", strconv.Itoa(port), "-sidecar_image", "img:1")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})

	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pair.CACert)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	url := fmt.Sprintf("https://127.0.0.1:%d/inject-sidecar", port)
	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u1","kind":{"version":"v1","kind":"Pod"},` +
		`"namespace":"default","operation":"CREATE","object":{"metadata":{"name":"p","annotations":{"kar.ibm.com/app":"a","kar.ibm.com/sidecarContainer":"true"}},` +
		`"spec":{"containers":[{"name":"app","image":"x"}]}}}}`

	var resp *http.Response
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err = client.Post(url, "application/json", strings.NewReader(body))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("injector never answered: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := review.Response
	if r == nil || r.UID != "u1" || !r.Allowed || r.PatchType == nil || *r.PatchType != admissionv1.PatchTypeJSONPatch ||
		!bytes.Contains(r.Patch, []byte(`"image":"img:1"`)) {
		t.Fatalf("response %+v patch %s", r, r.Patch)
	}

	get, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	get.Body.Close()
	if get.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", get.StatusCode)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("no exit after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "kar-injector stopped") {
		t.Errorf("logs:\n%s", logs.String())
	}
}
