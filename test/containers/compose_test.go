package containers

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// dockerAPI serves podman's Docker-compatible API on a socket of the test
// until it ends, and returns its DOCKER_HOST.
func dockerAPI(t *testing.T, p *Podman) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "podman.sock")
	svc := testenv.Start(t, "podman-service", []string{"CONTAINERS_CONF=" + p.conf}, "",
		"podman", "system", "service", "--time=0", "unix://"+sock)
	t.Cleanup(func() {
		_ = svc.Signal(syscall.SIGTERM)
		if _, err := svc.Wait(30 * time.Second); err != nil {
			t.Errorf("podman system service did not stop: %v", err)
		}
	})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	testenv.Eventually(t, 60*time.Second, func() bool {
		resp, err := client.Get("http://d/_ping")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == "OK"
	}, "podman's Docker API to answer /_ping on %s", sock)
	return "unix://" + sock
}

// kafkaStandin builds the stand-in for apache/kafka (testdata/kafka-standin).
func kafkaStandin(t *testing.T, p *Podman, services string) string {
	t.Helper()
	const ref = "localhost/kar-test/kafka-standin:latest"
	p.Must(t, 10*time.Minute, "build", "--network=host", "--layers", "-t", ref,
		"--build-arg", "BASE="+services, "--build-arg", "KAR_DEV_IMAGE="+ensureImage(t, p, "kar-dev"),
		"testdata/kafka-standin")
	return ref
}

// inventory lists what podman holds that compose could leave behind.
func inventory() map[string][]string {
	return map[string][]string{
		"containers": {"ps", "-a", "--format", "{{.Names}}"},
		"networks":   {"network", "ls", "--format", "{{.Name}}"},
		"volumes":    {"volume", "ls", "--format", "{{.Name}}"},
	}
}

func sortedFields(s string) []string {
	f := strings.Fields(s)
	sort.Strings(f)
	return f
}

// TestCompose brings scripts/docker-compose.yaml up and down with the
// repository's scripts through podman's Docker API and docker-compose, runs
// the deployment guide's hello world (kar run on the host) against the two
// containers, and checks that nothing is left behind: no container, no
// network, no volume, both ports free.
func TestCompose(t *testing.T) {
	p := requirePodman(t)
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Fatalf("docker-compose is not on PATH (scripts/test-containers.sh installs it): %v", err)
	}
	example, err := filepath.Abs(filepath.Join(repoRoot, "examples", "service-hello-js"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(example, "node_modules", "express")); err != nil {
		t.Fatalf("%s has no node_modules (scripts/test-containers.sh runs npm install): %v", example, err)
	}
	services, _ := ensureBase(t, p, servicesBase())
	kafka := kafkaStandin(t, p, services)
	redisPort, kafkaPort := testenv.FreePort(t), testenv.FreePort(t)
	env := append(p.Env(),
		"DOCKER_HOST="+dockerAPI(t, p),
		"KAR_REDIS_IMAGE="+services, "KAR_KAFKA_IMAGE="+kafka,
		"KAR_REDIS_PORT="+strconv.Itoa(redisPort), "KAR_KAFKA_PORT="+strconv.Itoa(kafkaPort),
		"KAR_COMPOSE_WAIT=120")
	script := func(name string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "bash", filepath.Join(repoRoot, "scripts", name))
		cmd.Env = env
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// Whatever happens, the containers, their network and volumes go.
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			if out, err := script("docker-compose-stop.sh"); err != nil {
				t.Errorf("docker-compose-stop.sh at cleanup: %v\n%s", err, out)
			}
		}
		_, _ = p.Run(context.Background(), time.Minute, "rm", "-f", "-t", "2", "--ignore", "kar-redis", "kar-kafka")
	})

	before := map[string][]string{}
	for what, args := range inventory() {
		before[what] = sortedFields(p.Must(t, time.Minute, args...))
	}
	start := time.Now()
	out, err := script("docker-compose-start.sh")
	if err != nil {
		t.Fatalf("docker-compose-start.sh: %v\n%s", err, out)
	}
	t.Logf("docker-compose-start.sh took %s:\n%s", time.Since(start).Round(100*time.Millisecond), out)
	if want := "export KAFKA_BROKERS=localhost:" + strconv.Itoa(kafkaPort) + " REDIS_HOST=localhost REDIS_PORT=" + strconv.Itoa(redisPort); !strings.Contains(out, want) {
		t.Errorf("docker-compose-start.sh does not say %q", want)
	}

	karEnv := []string{"KAFKA_BROKERS=localhost:" + strconv.Itoa(kafkaPort), "REDIS_HOST=localhost", "REDIS_PORT=" + strconv.Itoa(redisPort)}
	kar := testenv.KarBin(t)
	server := testenv.Start(t, "server", append(karEnv, "KAR_APP_PORT="+strconv.Itoa(testenv.FreePort(t))), example,
		kar, "run", "-app", "hello-compose", "-service", "greeter", "-runtime_port", strconv.Itoa(testenv.FreePort(t)), "node", "server.js")
	server.WaitOutput(t, "greeter listening", 60*time.Second)
	client := testenv.Start(t, "client", karEnv, example, kar, "run", "-app", "hello-compose",
		"-runtime_port", strconv.Itoa(testenv.FreePort(t)), "node", "client.js")
	if code, err := client.Wait(90 * time.Second); err != nil || code != 0 {
		t.Fatalf("client: exit %d, %v:\n%s", code, err, client.Output())
	}
	if n := strings.Count(client.Output(), "Hello John Doe!"); n != 2 {
		t.Errorf("client printed Hello John Doe! %d times, want 2:\n%s", n, client.Output())
	}
	// kar rest as the Redis ACL user the compose file creates.
	rest := exec.Command(kar, "rest", "-app", "hello-compose", "post", "greeter", "helloJson", `{"name": "Alan Turing"}`)
	rest.Env = append(rest.Environ(), append(karEnv, "REDIS_USER=karmesh", "REDIS_PASSWORD=act0rstate")...)
	if got, err := rest.Output(); err != nil || strings.TrimSpace(string(got)) != `{"greetings":"Hello Alan Turing!"}` {
		t.Fatalf("kar rest as karmesh: %v, %q", err, got)
	}
	_ = server.Signal(syscall.SIGTERM)
	if code, err := server.Wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("server: exit %d, %v", code, err)
	}

	stopped = true
	if out, err := script("docker-compose-stop.sh"); err != nil {
		t.Fatalf("docker-compose-stop.sh: %v\n%s", err, out)
	}
	for what, args := range inventory() {
		if now := sortedFields(p.Must(t, time.Minute, args...)); strings.Join(now, " ") != strings.Join(before[what], " ") {
			t.Errorf("%s after docker-compose-stop.sh: %v, before start: %v", what, now, before[what])
		}
	}
	for _, port := range []int{redisPort, kafkaPort} {
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Errorf("port %d still taken after docker-compose-stop.sh: %v", port, err)
			continue
		}
		ln.Close()
	}
}
