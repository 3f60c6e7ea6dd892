package containers

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// stopGrace is the grace period of `podman stop` (Kubernetes' default is
// 30 s; kar drains well within 10).
const stopGrace = 10 * time.Second

// hello is one language's hello world: the example image and the commands
// of its server (the image's CMD) and client.
type hello struct {
	image  string
	client []string
}

func hellos() map[string]hello {
	return map[string]hello{
		"js": {image: "service-hello-js", client: []string{"node", "client.js"}},
		"go": {image: "service-hello-go", client: []string{"/app/bin/client"}},
	}
}

// TestSidecarInContainer runs the hello world as two containers from the
// example image, each with kar in the container (KAR_SIDECAR_IN_CONTAINER)
// configured by environment variables only, on the host's network against
// a redis-server and the Kafka-protocol broker run as processes. The
// client prints the greeting twice and exits 0, `kar rest` from the host
// gets the answer, and `podman stop` drains the server, which exits 0
// within the grace period.
func TestSidecarInContainer(t *testing.T) {
	p := requirePodman(t)
	for lang, h := range hellos() {
		t.Run(lang, func(t *testing.T) {
			ref := ensureImage(t, p, h.image)
			b := testenv.Backend(t)
			app := "hello-ctr-" + lang
			env := func(extra ...string) []string {
				var args []string
				for _, kv := range append(b.Env(), extra...) {
					args = append(args, "-e", kv)
				}
				return args
			}

			server := uniqueName("kar-test-greeter")
			p.RemoveContainerAtEnd(t, server)
			start := time.Now()
			args := append([]string{"run", "--name", server, "--network=host"}, env(
				"KAR_SIDECAR_IN_CONTAINER=true", "KAR_APP="+app, "KAR_SERVICE=greeter",
				"KAR_APP_PORT="+strconv.Itoa(testenv.FreePort(t)),
				"KAR_RUNTIME_PORT="+strconv.Itoa(testenv.FreePort(t)))...)
			srv := testenv.Start(t, "server", []string{"CONTAINERS_CONF=" + p.conf}, "", append([]string{"podman"}, append(args, ref)...)...)

			client := uniqueName("kar-test-client")
			p.RemoveContainerAtEnd(t, client)
			args = append([]string{"run", "--rm", "--name", client, "--network=host"}, env(
				"KAR_SIDECAR_IN_CONTAINER=true", "KAR_APP="+app,
				"KAR_APP_PORT="+strconv.Itoa(testenv.FreePort(t)),
				"KAR_RUNTIME_PORT="+strconv.Itoa(testenv.FreePort(t)))...)
			out, err := p.Run(context.Background(), 2*time.Minute, append(append(args, ref), h.client...)...)
			if err != nil {
				t.Fatalf("client: %v\nserver:\n%s", err, srv.Output())
			}
			if n := strings.Count(out, "Hello John Doe!"); n != 2 {
				t.Errorf("client printed Hello John Doe! %d times, want 2:\n%s", n, out)
			}
			srv.WaitOutput(t, "Hello John Doe!", 10*time.Second)
			t.Logf("server container start to first request served: %s", time.Since(start).Round(100*time.Millisecond))

			rest := exec.Command(testenv.KarBin(t), "rest", "-app", app, "post", "greeter", "helloJson", `{"name": "Alan Turing"}`)
			rest.Env = append(rest.Environ(), b.Env()...)
			got, err := rest.Output()
			if err != nil || strings.TrimSpace(string(got)) != `{"greetings":"Hello Alan Turing!"}` {
				t.Fatalf("kar rest: %v, %q", err, got)
			}

			stopped := time.Now()
			p.Must(t, stopGrace+30*time.Second, "stop", "-t", strconv.Itoa(int(stopGrace.Seconds())), server)
			took := time.Since(stopped)
			code, err := srv.Wait(30 * time.Second)
			if err != nil {
				t.Fatalf("podman run of the server did not end after podman stop: %v", err)
			}
			exit := strings.TrimSpace(p.Must(t, time.Minute, "inspect", "--format", "{{.State.ExitCode}}", server))
			if code != 0 || exit != "0" || took >= stopGrace {
				t.Errorf("podman stop: the server exited %s (podman run: %d) after %s, want 0 within %s; output:\n%s", exit, code, took, stopGrace, srv.Output())
			}
		})
	}
}
