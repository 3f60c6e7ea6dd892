// Package autoscaletest has the pieces of the autoscaling tests: real
// sidecars (kar run) joined to a test backend, a component that answers,
// and requests told to a service.
package autoscaletest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// Sidecar runs `kar run -runtime_port P ARGS` against b, waits until it
// is healthy and returns P. The process is stopped by its PID at the end.
func Sidecar(t testing.TB, b *devenv.Backend, name string, args ...string) int {
	t.Helper()
	port := testenv.FreePort(t)
	argv := append([]string{testenv.KarBin(t), "run", "-runtime_port", strconv.Itoa(port)}, args...)
	testenv.Start(t, name, append(b.Env(), "KAR_LEASE_TTL=1s"), "", argv...)
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/kar/v1/system/health", port))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "%s healthy", name)
	return port
}

// Component serves every path with "ok" until the test ends; it returns
// its port.
func Component(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// Tell sends service's path /x an asynchronous call through the sidecar
// on port: it is accepted (202) and held while no replica serves it.
func Tell(t testing.TB, port int, service string) {
	t.Helper()
	req, _ := http.NewRequest("POST", fmt.Sprintf("http://127.0.0.1:%d/kar/v1/service/%s/call/x", port, service), strings.NewReader("{}"))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Pragma", "async")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 {
		t.Fatalf("tell %s: %d", service, resp.StatusCode)
	}
}

// Config is b as kar's configuration names a backend.
func Config(b *devenv.Backend) config.Backend {
	return config.Backend{KafkaBrokers: []string{b.KafkaBrokers()}, KafkaVersion: "2.8.0", RedisHost: b.RedisHost(), RedisPort: b.RedisPort()}
}

// Source dials b's load (autoscale.Source), closed at the end of the test.
func Source(t testing.TB, b *devenv.Backend) *autoscale.Source {
	t.Helper()
	src, err := autoscale.Dial(context.Background(), Config(b))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	return src
}
