package containers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/k8s/injector"
)

// admitter sends Pods through the kar-injector image, run as the webhook
// it is in a cluster (HTTPS, an AdmissionReview per Pod).
type admitter struct {
	url    string
	client *http.Client
}

// startInjector runs the kar-injector image on the host's network with a
// throwaway certificate, the kar image as its sidecar image.
func startInjector(t *testing.T, p *Podman, injectorRef, karRef string) *admitter {
	t.Helper()
	dir := t.TempDir()
	certs, err := devenv.NewCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The injector runs as 65532; the test's files are root's.
	for _, f := range []string{dir, certs.CertFile, certs.KeyFile} {
		if err := os.Chmod(f, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	port := testenv.FreePort(t)
	name := uniqueName("kar-test-injector")
	p.RemoveContainerAtEnd(t, name)
	p.Must(t, time.Minute, "run", "-d", "--name", name, "--network=host", "-v", dir+":/certs:ro", injectorRef,
		"-tls_cert_file", "/certs/"+filepath.Base(certs.CertFile), "-tls_private_key_file", "/certs/"+filepath.Base(certs.KeyFile),
		"-port", strconv.Itoa(port), "-sidecar_image", karRef, "-image_pull_policy", "IfNotPresent")
	a := &admitter{
		url:    "https://127.0.0.1:" + strconv.Itoa(port),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: certs.ClientConfig()}},
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		resp, err := a.client.Get(a.url + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "the kar-injector container to answer /healthz")
	return a
}

// admit returns the Pod as the API server would store it after the
// injector's mutation.
func (a *admitter) admit(t *testing.T, pod *corev1.Pod) *corev1.Pod {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	review := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID(uniqueName("review")),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			Name:      pod.Name,
			Namespace: "default",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: raw},
		},
	}
	body, _ := json.Marshal(review)
	resp, err := a.client.Post(a.url+injector.Path, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("admission review: %v", err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	var answer admissionv1.AdmissionReview
	if err := json.Unmarshal(out, &answer); err != nil || answer.Response == nil {
		t.Fatalf("admission review: %s: %v\n%s", resp.Status, err, out)
	}
	if !answer.Response.Allowed {
		t.Fatalf("the injector denied %s: %+v", pod.Name, answer.Response.Result)
	}
	patch, err := jsonpatch.DecodePatch(answer.Response.Patch)
	if err != nil {
		t.Fatalf("the injector's patch: %v\n%s", err, answer.Response.Patch)
	}
	patched, err := patch.Apply(raw)
	if err != nil {
		t.Fatalf("applying the injector's patch: %v\n%s", err, answer.Response.Patch)
	}
	var admitted corev1.Pod
	if err := json.Unmarshal(patched, &admitted); err != nil {
		t.Fatal(err)
	}
	return &admitted
}

// loadPod reads an example's manifest: a Pod, or a Job's Pod template as
// the Job controller would create it.
func loadPod(t *testing.T, path string) *corev1.Pod {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var meta metav1.TypeMeta
	if err := yaml.Unmarshal(b, &meta); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	pod := &corev1.Pod{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"}}
	switch meta.Kind {
	case "Pod":
		err = yaml.UnmarshalStrict(b, pod)
	case "Job":
		var job batchv1.Job
		if err = yaml.UnmarshalStrict(b, &job); err == nil {
			pod.ObjectMeta = job.Spec.Template.ObjectMeta
			pod.Name = job.Name
			pod.Spec = job.Spec.Template.Spec
		}
	default:
		err = fmt.Errorf("kind %q: want Pod or Job", meta.Kind)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return pod
}

// TestKubePlay runs service-hello-js's deploy/server.yaml and
// deploy/client.yaml as Pods with `podman kube play` after admission
// through the kar-injector image, in both of its modes: kar in the app
// container (the manifests' sidecarContainer "false") and the injected kar
// container. The Pods mount the runtime-config secret as in a cluster. The
// client's container exits 0 having printed the greeting twice, the server
// answers `kar rest` from the host; in sidecar mode both containers of the
// server Pod run and each app reaches its sidecar on localhost.
//
// On the host's network (the backends listen on its loopback) the Pods'
// ports are free ones given by the appPort, runtimePort and metricsPort
// annotations; in
// a cluster each Pod has its own network and keeps the defaults.
func TestKubePlay(t *testing.T) {
	p := requirePodman(t)
	if _, err := exec.LookPath("catatonit"); err != nil {
		t.Fatalf("podman kube play builds its pause image with catatonit, which is not installed: %v", err)
	}
	karRef := ensureImage(t, p, "kar")
	appRef := ensureImage(t, p, "service-hello-js")
	adm := startInjector(t, p, ensureImage(t, p, "kar-injector"), karRef)
	deploy := filepath.Join(repoRoot, "examples", "service-hello-js", "deploy")

	for _, sidecar := range []bool{false, true} {
		mode := map[bool]string{false: "in-container", true: "sidecar"}[sidecar]
		t.Run(mode, func(t *testing.T) {
			b := testenv.Backend(t)
			secret := runtimeConfigSecret(b)
			play := func(file string, args ...string) *corev1.Pod {
				pod := loadPod(t, filepath.Join(deploy, file))
				if len(args) > 0 {
					pod.Spec.Containers[0].Args = args
				}
				pod.Name += "-" + mode
				pod.Annotations[injector.AnnotationSidecar] = strconv.FormatBool(sidecar)
				pod.Annotations[injector.Prefix+"appPort"] = strconv.Itoa(testenv.FreePort(t))
				pod.Annotations[injector.Prefix+"runtimePort"] = strconv.Itoa(testenv.FreePort(t))
				// The sidecar's metrics port (on in sidecar mode) too: two
				// Pods on one host network would both take the default.
				pod.Annotations[injector.Prefix+"metricsPort"] = strconv.Itoa(testenv.FreePort(t))
				pod.Spec.HostNetwork = true
				for i := range pod.Spec.Containers {
					pod.Spec.Containers[i].Image = appRef
				}
				admitted := adm.admit(t, pod)
				checkAdmitted(t, admitted, sidecar)
				playPod(t, p, admitted, secret)
				return admitted
			}

			server := play("server.yaml")
			start := time.Now()
			waitLog(t, p, server.Name+"-server", "greeter listening", 90*time.Second)
			// With kar in its container, kar run starts client.js once
			// kar is ready. An injected kar container starts beside the app
			// in no order, so that Pod runs client-sdk.js: kar-sdk retries
			// until its sidecar answers, and ends it (sys.shutdown) so that
			// the Job's Pod completes.
			client := play("client.yaml", clientArgs(sidecar)...)
			logs := waitExited(t, p, client.Name+"-client", 120*time.Second)
			for want, times := range clientGreetings(sidecar) {
				if n := strings.Count(logs, want); n != times {
					t.Errorf("client printed %q %d times, want %d:\n%s", want, n, times, logs)
				}
			}
			if sidecar {
				waitExited(t, p, client.Name+"-"+injector.SidecarContainerName, 60*time.Second)
			}
			t.Logf("%s: server Pod start to client served: %s", mode, time.Since(start).Round(100*time.Millisecond))

			if sidecar {
				for _, c := range []string{server.Name + "-server", server.Name + "-" + injector.SidecarContainerName} {
					if state := strings.TrimSpace(p.Must(t, time.Minute, "inspect", "--format", "{{.State.Status}}", c)); state != "running" {
						t.Errorf("server Pod in sidecar mode: container %s is %s, want running", c, state)
					}
				}
			}
			rest := exec.Command(testenv.KarBin(t), "rest", "-app", "hello-js", "post", "greeter", "helloJson", `{"name": "Alan Turing"}`)
			rest.Env = append(rest.Environ(), b.Env()...)
			if got, err := rest.Output(); err != nil || strings.TrimSpace(string(got)) != `{"greetings":"Hello Alan Turing!"}` {
				t.Errorf("kar rest: %v, %q", err, got)
			}
		})
	}
}

// clientArgs is the client Pod's command in each mode (nil: the manifest's).
func clientArgs(sidecar bool) []string {
	if sidecar {
		return []string{"node", "client-sdk.js"}
	}
	return nil
}

// clientGreetings are what the client prints in each mode, and how often.
func clientGreetings(sidecar bool) map[string]int {
	if sidecar {
		return map[string]int{"call: Hello SDK Call!": 1, "asyncCall: Hello SDK Async!": 1}
	}
	return map[string]int{"Hello John Doe!": 2}
}

// runtimeConfigSecret is kar.ibm.com.runtime-config as `kar k8s deploy`
// writes it: one lower-case key per kar configuration setting.
func runtimeConfigSecret(b *devenv.Backend) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: injector.RuntimeConfigSecret},
		StringData: map[string]string{
			"kafka_brokers": b.KafkaBrokers(),
			"redis_host":    b.RedisHost(),
			"redis_port":    strconv.Itoa(b.RedisPort()),
		},
	}
}

// checkAdmitted checks the shape the injector gave the Pod.
func checkAdmitted(t *testing.T, pod *corev1.Pod, sidecar bool) {
	t.Helper()
	names := []string{}
	for _, c := range pod.Spec.Containers {
		names = append(names, c.Name)
	}
	if got := len(pod.Spec.Containers); got != map[bool]int{false: 1, true: 2}[sidecar] || (sidecar && names[1] != injector.SidecarContainerName) {
		t.Fatalf("admitted %s has containers %v", pod.Name, names)
	}
	found := false
	for _, v := range pod.Spec.Volumes {
		found = found || (v.Secret != nil && v.Secret.SecretName == injector.RuntimeConfigSecret)
	}
	if !found {
		t.Fatalf("admitted %s does not mount %s", pod.Name, injector.RuntimeConfigSecret)
	}
}

// playPod runs the Pod with podman kube play, and removes it at the end.
// The runtime-config secret is materialized as the kubelet does it, a
// directory with one file per key, mounted with hostPath: podman 4.3's kube
// play panics on secret volumes (a nil dereference in VolumeFromSecret).
func playPod(t *testing.T, p *Podman, pod *corev1.Pod, secret *corev1.Secret) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), secret.Name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for k, v := range secret.StringData {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	pod = pod.DeepCopy()
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		// Declared container ports are informational in Kubernetes; podman
		// refuses them on the host's network (port mappings need a bridge).
		c.Ports = nil
		// podman knows no status.podIP: give the value the kubelet would,
		// the host's address on the host's network.
		for j, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "status.podIP" {
				c.Env[j] = corev1.EnvVar{Name: e.Name, Value: "127.0.0.1"}
			}
		}
	}
	for i, v := range pod.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret.Name {
			dirType := corev1.HostPathDirectory
			pod.Spec.Volumes[i].VolumeSource = corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirType}}
		}
	}
	doc, err := yaml.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), pod.Name+".yaml")
	if err := os.WriteFile(file, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := p.Run(context.Background(), 2*time.Minute, "pod", "rm", "-f", "-t", "5", "--ignore", pod.Name); err != nil {
			t.Errorf("removing Pod %s: %v", pod.Name, err)
		}
	})
	if _, err := p.Run(context.Background(), 3*time.Minute, "kube", "play", file); err != nil {
		t.Fatalf("podman kube play %s: %v\n%s", pod.Name, err, doc)
	}
}

// waitLog waits until a container's log holds s.
func waitLog(t *testing.T, p *Podman, container, s string, timeout time.Duration) {
	t.Helper()
	var logs string
	deadline := time.Now().Add(timeout)
	for {
		logs, _ = p.Run(context.Background(), 30*time.Second, "logs", container)
		if strings.Contains(logs, s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not log %q within %s:\n%s", container, s, timeout, logs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitExited waits until the container exits 0 and returns its log.
func waitExited(t *testing.T, p *Podman, container string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		state, err := p.Run(context.Background(), 30*time.Second, "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container)
		logs, _ := p.Run(context.Background(), 30*time.Second, "logs", container)
		if err == nil && strings.HasPrefix(state, "exited") {
			if strings.TrimSpace(state) != "exited 0" {
				t.Fatalf("%s: %s; log:\n%s", container, state, logs)
			}
			return logs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not exit within %s (%s %v); log:\n%s", container, timeout, state, err, logs)
		}
		time.Sleep(500 * time.Millisecond)
	}
}
