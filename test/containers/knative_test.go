package containers

import (
	"context"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/internal/testenv"
)

// knativeService is the part of a serving.knative.dev/v1 Service a
// container engine needs to start its container.
type knativeService struct {
	Spec struct {
		Template struct {
			Spec struct {
				Containers []struct {
					Image string `json:"image"`
					Env   []struct {
						Name  string `json:"name"`
						Value string `json:"value"`
					} `json:"env"`
					EnvFrom []struct {
						SecretRef *struct {
							Name string `json:"name"`
						} `json:"secretRef"`
					} `json:"envFrom"`
					Ports []struct {
						ContainerPort int `json:"containerPort"`
					} `json:"ports"`
				} `json:"containers"`
			} `json:"spec"`
		} `json:"template"`
	} `json:"spec"`
}

// TestKnativeService starts the Go example's image (the one `kar knative
// service` and `kar ce app run` deploy) with exactly the environment the
// generated Knative Service gives its container: its env, the values of the
// runtime-config secret it takes with envFrom, and PORT as Knative sets it
// from containerPort. It joins the mesh and serves a call from the host.
func TestKnativeService(t *testing.T) {
	p := requirePodman(t)
	ref := ensureImage(t, p, "service-hello-go")
	b := testenv.Backend(t)
	kar := testenv.KarBin(t)
	appPort, runtimePort := testenv.FreePort(t), testenv.FreePort(t)

	// On the host's network both ports must be free ones; a cluster gives
	// each Pod its own (8080 and kar's default).
	gen := exec.Command(kar, "knative", "service", "-app", "hello-kn", "-image", ref, "-name", "greeter-go",
		"-service", "greeter", "-scale", "1", "-port", strconv.Itoa(appPort),
		"-env", "KAR_RUNTIME_PORT="+strconv.Itoa(runtimePort))
	manifest, err := gen.Output()
	if err != nil {
		t.Fatalf("kar knative service: %v", err)
	}
	var svc knativeService
	if err := yaml.Unmarshal(manifest, &svc); err != nil {
		t.Fatalf("the generated Service: %v\n%s", err, manifest)
	}
	cs := svc.Spec.Template.Spec.Containers
	if len(cs) != 1 || cs[0].Image != ref || len(cs[0].Ports) != 1 {
		t.Fatalf("the generated Service has not one container of %s with one port:\n%s", ref, manifest)
	}
	c := cs[0]
	// The runtime-config secret, as kar-ce-project-enable.sh or a user
	// creates it: the KAFKA_* and REDIS_* variables of the backends.
	secrets := map[string][]string{entrypoint.RuntimeConfigSecret: b.Env()}
	args := []string{"run", "--name", uniqueName("kar-test-knative"), "--network=host",
		"-e", "PORT=" + strconv.Itoa(c.Ports[0].ContainerPort)}
	p.RemoveContainerAtEnd(t, args[2])
	for _, from := range c.EnvFrom {
		if from.SecretRef == nil || secrets[from.SecretRef.Name] == nil {
			t.Fatalf("envFrom %+v: not the runtime-config secret", from)
		}
		for _, kv := range secrets[from.SecretRef.Name] {
			args = append(args, "-e", kv)
		}
	}
	for _, e := range c.Env {
		args = append(args, "-e", e.Name+"="+e.Value)
	}
	start := time.Now()
	srv := testenv.Start(t, "knative", []string{"CONTAINERS_CONF=" + p.conf}, "", append([]string{"podman"}, append(args, c.Image)...)...)

	var got []byte
	testenv.Eventually(t, 90*time.Second, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		rest := exec.CommandContext(ctx, kar, "rest", "-app", "hello-kn", "post", "greeter", "helloJson", `{"name": "Grace Hopper"}`)
		rest.Env = append(rest.Environ(), b.Env()...)
		got, err = rest.Output()
		return err == nil
	}, "the Knative container to serve a call")
	t.Logf("Knative container start to first request served: %s", time.Since(start).Round(100*time.Millisecond))
	if strings.TrimSpace(string(got)) != `{"greetings":"Hello Grace Hopper!"}` {
		t.Errorf("kar rest: %q", got)
	}
	srv.WaitOutput(t, "Hello Grace Hopper!", 10*time.Second)
	p.Must(t, stopGrace+30*time.Second, "stop", "-t", strconv.Itoa(int(stopGrace.Seconds())), args[2])
	if code, err := srv.Wait(30 * time.Second); err != nil || code != 0 {
		t.Errorf("the container exited %d, %v after podman stop:\n%s", code, err, srv.Output())
	}
}
