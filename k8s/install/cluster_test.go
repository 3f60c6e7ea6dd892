package install

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/k8s/injector"
	"github.com/kar-runtime/kar/k8s/kubetest"
)

// kar runs `kar k8s ARGS` as the CLI does and fails the test on a non-zero exit.
func kar(t *testing.T, ctx context.Context, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main(ctx, args, &out, &errb); code != 0 {
		t.Fatalf("kar k8s %s: exit %d: %s%s", strings.Join(args, " "), code, out.String(), errb.String())
	}
	return out.String()
}

func pod(name string, ann map[string]string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "localhost:5000/kar/examples/service-hello-js",
			Env: []corev1.EnvVar{{Name: "MINE", Value: "kept"}},
		}}},
	}
}

func envOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// TestAgainstAPIServer installs kar into a real kube-apiserver (with etcd),
// lets that API server call the injector over TLS through the webhook
// configuration deploy wrote, and checks the Pods as the API server stored
// them, namespace enable/disable, certificate rotation and undeploy.
func TestAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	cl := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kc := []string{"-kubeconfig", cl.Kubeconfig}
	c, err := NewClient(cl.Kubeconfig, "")
	if err != nil {
		t.Fatal(err)
	}
	core := c.Typed.CoreV1()

	// Enabling a namespace before kar is deployed says what to do.
	var out, errb bytes.Buffer
	if code := Main(ctx, append([]string{"namespace", "enable", "early"}, kc...), &out, &errb); code != 1 || !strings.Contains(errb.String(), "kar k8s deploy") {
		t.Fatalf("enable before deploy: exit %d, %q", code, errb.String())
	}

	// The injector runs here, on a port held open from now on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	webhookURL := fmt.Sprintf("https://%s%s", ln.Addr(), injector.Path)
	kar(t, ctx, append([]string{"deploy", "-webhook-url", webhookURL}, kc...)...)

	// What deploy made.
	rc, err := core.Secrets(Namespace).Get(ctx, RuntimeConfigSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wantRC := map[string]string{"kafka_brokers": "kar-kafka-0.kar-kafka.kar-system.svc:9092", "redis_host": "kar-redis.kar-system.svc",
		"redis_port": "6379", "redis_user": "karmesh", "kafka_enable_tls": "false", "redis_enable_tls": "false"}
	for k, v := range wantRC {
		if got := string(rc.Data[k]); got != v {
			t.Errorf("runtime config %s = %q, want %q", k, got, v)
		}
	}
	password := string(rc.Data["redis_password"])
	if len(password) < 32 {
		t.Errorf("redis_password %q is not a generated secret", password)
	}
	redisConf, err := core.Secrets(Namespace).Get(ctx, RedisConfigSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(redisConf.Data["redis.conf"]), "user karmesh on >"+password+" ") {
		t.Errorf("redis.conf does not give karmesh the runtime-config password:\n%s", redisConf.Data["redis.conf"])
	}
	for _, name := range []string{RedisName, KafkaName} {
		if _, err := c.Typed.AppsV1().StatefulSets(Namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("statefulset %s: %v", name, err)
		}
		if _, err := core.Services(Namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("service %s: %v", name, err)
		}
	}
	dep, err := c.Typed.AppsV1().Deployments(Namespace).Get(ctx, InjectorName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := dep.Spec.Template.Spec.Containers[0].Image; img != "localhost:5000/kar/kar-injector:latest" {
		t.Errorf("injector image %s", img)
	}
	tlsSecret, err := core.Secrets(Namespace).Get(ctx, InjectorTLSSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wh, err := c.Typed.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := wh.Webhooks[0]
	if w.ClientConfig.URL == nil || *w.ClientConfig.URL != webhookURL {
		t.Fatalf("webhook clientConfig %+v, want url %s", w.ClientConfig, webhookURL)
	}
	verifyCert(t, tlsSecret.Data["tls.crt"], w.ClientConfig.CABundle)
	if n := countCerts(w.ClientConfig.CABundle); n != 1 {
		t.Errorf("first install: %d CAs in the bundle, want 1", n)
	}
	ns, err := core.Namespaces().Get(ctx, "default", metav1.GetOptions{})
	if err != nil || ns.Labels[EnabledLabel] != "true" {
		t.Fatalf("default namespace not enabled: %v %v", ns.Labels, err)
	}

	// Start the injector with the certificate deploy made.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, tlsSecret.Data["tls.crt"], 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, tlsSecret.Data["tls.key"], 0o600); err != nil {
		t.Fatal(err)
	}
	srvCtx, stopSrv := context.WithCancel(context.Background())
	srvDone := make(chan error, 1)
	go func() {
		srv := &injector.Server{CertFile: certFile, KeyFile: keyFile, Log: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
			Options: injector.Options{SidecarImage: "localhost:5000/kar/kar:latest"}}
		srvDone <- srv.Serve(srvCtx, ln)
	}()
	t.Cleanup(func() {
		stopSrv()
		if err := <-srvDone; err != nil {
			t.Errorf("injector: %v", err)
		}
	})

	// Through the script, as a user would.
	scriptEnv := []string{"KAR_BIN=" + karBinary(t), "KUBECONFIG=" + cl.Kubeconfig}
	if code, out, errOut := runScript(t, scriptEnv, "kar-k8s-namespace-enable.sh", "apps"); code != 0 || !strings.Contains(out, "namespace apps created") {
		t.Fatalf("kar-k8s-namespace-enable.sh apps: exit %d: %s%s", code, out, errOut)
	}
	if _, err := core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"apps", "default"} {
		s, err := core.Secrets(n).Get(ctx, RuntimeConfigSecret, metav1.GetOptions{})
		if err != nil || !bytes.Equal(s.Data["redis_password"], rc.Data["redis_password"]) {
			t.Fatalf("namespace %s: runtime config not copied: %v", n, err)
		}
	}

	create := func(ns string, p *corev1.Pod) (*corev1.Pod, error) {
		return core.Pods(ns).Create(ctx, p, metav1.CreateOptions{})
	}
	// In-container mode, asked for as KAR's example manifests do.
	got, err := create("apps", pod("hello", map[string]string{"kar.ibm.com/app": "hello", "kar.ibm.com/service": "greeter", "kar.ibm.com/verbose": "info",
		"kar.ibm.com/sidecarContainer": "false"}))
	if err != nil {
		t.Fatal(err)
	}
	env := envOf(got.Spec.Containers[0])
	if env["KAR_APP"] != "hello" || env["KAR_SIDECAR_IN_CONTAINER"] != "true" || env["KAR_APP_PORT"] != "8080" || env["KAR_RUNTIME_PORT"] != "3500" ||
		env["KAR_EXTRA_ARGS"] != "-service greeter -v info" || env["MINE"] != "kept" || len(got.Spec.Containers) != 1 {
		t.Errorf("stored pod env %v, %d containers", env, len(got.Spec.Containers))
	}
	if len(got.Spec.Volumes) == 0 || got.Spec.Volumes[len(got.Spec.Volumes)-1].Secret == nil ||
		got.Spec.Volumes[len(got.Spec.Volumes)-1].Secret.SecretName != RuntimeConfigSecret {
		t.Errorf("stored pod volumes %+v", got.Spec.Volumes)
	}
	// Sidecar mode is the default, as in KAR: a Pod with only the kar
	// annotations that name it gets a second container with the probe and
	// the hook, the app container gets KAR_APP and the ports, and the Pod
	// is found by its labels.
	got, err = create("apps", pod("side", map[string]string{"kar.ibm.com/app": "hello", "kar.ibm.com/service": "greeter", "kar.ibm.com/actors": "Cart,Order",
		"kar.ibm.com/extraArgs": "-v,info,-h2c"}))
	if err != nil {
		t.Fatal(err)
	}
	checkSidecarPod(t, got)
	sel, err := core.Pods("apps").List(ctx, metav1.ListOptions{LabelSelector: "kar.ibm.com/app=hello,kar.ibm.com/service=greeter"})
	if err != nil || len(sel.Items) != 2 {
		t.Errorf("pods selected by the kar labels: %v %d, want hello and side", err, len(sel.Items))
	}
	// A Pod whose own label contradicts its annotation is denied by name.
	conflict := pod("conflict", map[string]string{"kar.ibm.com/app": "hello"})
	conflict.Labels = map[string]string{"kar.ibm.com/app": "other"}
	if _, err := create("apps", conflict); err == nil || !strings.Contains(err.Error(), `label kar.ibm.com/app="other" differs`) {
		t.Errorf("conflicting label: err = %v", err)
	}
	// A bad annotation is denied by name.
	_, err = create("apps", pod("bad", map[string]string{"kar.ibm.com/app": "hello", "kar.ibm.com/appPort": "http"}))
	if err == nil || !strings.Contains(err.Error(), "kar.ibm.com/appPort") {
		t.Errorf("bad annotation: err = %v, want a denial naming kar.ibm.com/appPort", err)
	}
	_, err = create("apps", pod("noapp", map[string]string{"kar.ibm.com/service": "s"}))
	if err == nil || !strings.Contains(err.Error(), "kar.ibm.com/app is missing") {
		t.Errorf("missing app: err = %v", err)
	}
	// A workload's Pod template is checked when it is applied.
	badDep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "bad-template"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}, Annotations: map[string]string{"kar.ibm.com/app": "x", "kar.ibm.com/actors": "A B"}},
				Spec:       pod("", nil).Spec,
			},
		},
	}
	_, err = c.Typed.AppsV1().Deployments("apps").Create(ctx, badDep, metav1.CreateOptions{})
	if err == nil || !strings.Contains(err.Error(), "kar.ibm.com/actors") {
		t.Errorf("deployment with a bad template: err = %v", err)
	}
	badDep.Spec.Template.Annotations["kar.ibm.com/actors"] = "A,B"
	if _, err = c.Typed.AppsV1().Deployments("apps").Create(ctx, badDep, metav1.CreateOptions{}); err != nil {
		t.Errorf("deployment with a good template: %v", err)
	}

	// Namespaces not enabled are left alone.
	got, err = create("plain", pod("hello", map[string]string{"kar.ibm.com/app": "hello", "kar.ibm.com/appPort": "bad-but-ignored"}))
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Spec.Containers[0].Env) != 1 || len(got.Spec.Volumes) != 0 {
		t.Errorf("pod in a namespace not enabled was changed: %+v", got.Spec)
	}
	got, err = create("default", pod("hello", map[string]string{"kar.ibm.com/app": "hello"}))
	if err != nil || envOf(got.Spec.Containers[0])["KAR_APP"] != "hello" {
		t.Errorf("default namespace pod not injected: %v", err)
	}

	// The example's deploy files go through the webhook as the guide applies them.
	for _, variant := range []string{"", "-quay"} {
		server, client := examplePods(t, variant)
		for _, p := range []*corev1.Pod{server, client} {
			p.Name += variant
			got, err := create("default", p)
			if err != nil {
				t.Fatalf("example %s: %v", p.Name, err)
			}
			if env := envOf(got.Spec.Containers[0]); env["KAR_APP"] != "hello-js" || env["KAR_SIDECAR_IN_CONTAINER"] != "true" {
				t.Errorf("example %s not injected: %v", p.Name, env)
			}
		}
	}

	// Re-deploy rotates the certificate: the bundle trusts the new CA and
	// the old one the running injector still serves; the Redis password stays.
	kar(t, ctx, append([]string{"deploy", "-webhook-url", webhookURL}, kc...)...)
	wh, err = c.Typed.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, WebhookName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if n := countCerts(wh.Webhooks[0].ClientConfig.CABundle); n != 2 {
		t.Errorf("after rotation: %d CAs in the bundle, want new + previous", n)
	}
	tls2, err := core.Secrets(Namespace).Get(ctx, InjectorTLSSecret, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(tls2.Data["tls.crt"], tlsSecret.Data["tls.crt"]) {
		t.Error("re-deploy did not rotate the serving certificate")
	}
	verifyCert(t, tls2.Data["tls.crt"], wh.Webhooks[0].ClientConfig.CABundle)
	rc2, err := core.Secrets(Namespace).Get(ctx, RuntimeConfigSecret, metav1.GetOptions{})
	if err != nil || string(rc2.Data["redis_password"]) != password {
		t.Errorf("re-deploy changed the Redis password (err %v)", err)
	}
	if got, err := create("apps", pod("after-rotation", map[string]string{"kar.ibm.com/app": "hello"})); err != nil || envOf(got.Spec.Containers[0])["KAR_APP"] != "hello" {
		t.Errorf("injection after rotation: %v", err)
	}

	// Switching to managed services prunes the in-cluster Redis and Kafka
	// and refreshes the copies in enabled namespaces.
	creds := filepath.Join(t.TempDir(), "creds.json")
	if err := os.WriteFile(creds, []byte(credsJSON), 0o600); err != nil {
		t.Fatal(err)
	}
	kar(t, ctx, append([]string{"deploy", "-m", creds, "-webhook-url", webhookURL}, kc...)...)
	for _, name := range []string{RedisName, KafkaName} {
		if _, err := c.Typed.AppsV1().StatefulSets(Namespace).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("statefulset %s not pruned with -m: %v", name, err)
		}
	}
	if _, err := core.Secrets(Namespace).Get(ctx, RedisConfigSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("redis config not pruned with -m: %v", err)
	}
	for _, n := range []string{Namespace, "default", "apps"} {
		s, err := core.Secrets(n).Get(ctx, RuntimeConfigSecret, metav1.GetOptions{})
		if err != nil || string(s.Data["kafka_brokers"]) != "b0:9093,b1:9093" || string(s.Data["redis_password"]) != "rpw" {
			t.Errorf("namespace %s: runtime config not the managed one: %v", n, err)
		}
	}

	// Disable undoes enable.
	if code, out, errOut := runScript(t, scriptEnv, "kar-k8s-namespace-disable.sh", "apps"); code != 0 {
		t.Fatalf("kar-k8s-namespace-disable.sh apps: exit %d: %s%s", code, out, errOut)
	}
	ns, err = core.Namespaces().Get(ctx, "apps", metav1.GetOptions{})
	if err != nil || ns.Labels[EnabledLabel] != "" {
		t.Errorf("apps still labelled: %v %v", ns.Labels, err)
	}
	if _, err := core.Secrets("apps").Get(ctx, RuntimeConfigSecret, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("apps still holds the runtime config: %v", err)
	}
	got, err = create("apps", pod("after-disable", map[string]string{"kar.ibm.com/app": "hello"}))
	if err != nil || len(got.Spec.Containers[0].Env) != 1 {
		t.Errorf("pod in a disabled namespace: %v %+v", err, got)
	}

	// Undeploy leaves nothing behind.
	kar(t, ctx, append([]string{"undeploy"}, kc...)...)
	if _, err := c.Typed.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, WebhookName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("webhook configuration still there: %v", err)
	}
	for _, n := range []string{"default", "apps", Namespace} {
		secrets, err := core.Secrets(n).List(ctx, metav1.ListOptions{LabelSelector: PartOfLabel + "=kar"})
		if err != nil || len(secrets.Items) != 0 {
			t.Errorf("namespace %s: kar secrets left: %v %v", n, secrets, err)
		}
	}
	for _, name := range []string{RedisName, KafkaName, InjectorName} {
		if _, err := core.Services(Namespace).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("service %s left: %v", name, err)
		}
	}
	if l, err := c.Typed.AppsV1().StatefulSets(Namespace).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("statefulsets left: %v", err)
	}
	if l, err := c.Typed.AppsV1().Deployments(Namespace).List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("deployments left: %v", err)
	}
	// No namespace controller runs here, so kar-system stays Terminating.
	if ns, err := core.Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); err == nil && ns.DeletionTimestamp == nil {
		t.Errorf("namespace %s not being deleted", Namespace)
	}
	ns, err = core.Namespaces().Get(ctx, "default", metav1.GetOptions{})
	if err != nil || ns.Labels[EnabledLabel] != "" {
		t.Errorf("default still labelled: %v %v", ns.Labels, err)
	}
	// The user's namespaces and Pods stay.
	for _, n := range []string{"apps", "plain"} {
		if _, err := core.Pods(n).Get(ctx, "hello", metav1.GetOptions{}); err != nil {
			t.Errorf("user pod %s/hello gone: %v", n, err)
		}
	}
	// Undeploy again: nothing left to do, and no error.
	if out := kar(t, ctx, append([]string{"undeploy"}, kc...)...); strings.Contains(out, "deleted") {
		t.Errorf("second undeploy deleted something: %s", out)
	}
	// Deploying while kar-system is still terminating says to wait.
	out.Reset()
	errb.Reset()
	if code := Main(ctx, append([]string{"deploy"}, kc...), &out, &errb); code != 1 || !strings.Contains(errb.String(), "still being deleted") {
		t.Errorf("deploy during termination: exit %d, %q", code, errb.String())
	}
	got, err = create("default", pod("after-undeploy", map[string]string{"kar.ibm.com/app": "hello"}))
	if err != nil || len(got.Spec.Containers[0].Env) != 1 {
		t.Errorf("pod after undeploy: %v", err)
	}
}

// checkSidecarPod checks a Pod stored by the API server after injection in
// sidecar mode: its app container, the kar container, the labels.
func checkSidecarPod(t *testing.T, got *corev1.Pod) {
	t.Helper()
	if len(got.Spec.Containers) != 2 || got.Spec.Containers[1].Name != "kar" {
		t.Fatalf("stored sidecar pod containers %+v", got.Spec.Containers)
	}
	app, side := got.Spec.Containers[0], got.Spec.Containers[1]
	if env := envOf(app); env["KAR_APP"] != "hello" || env["KAR_APP_PORT"] != "8080" || env["KAR_RUNTIME_PORT"] != "3500" || env["MINE"] != "kept" ||
		env["KAR_SIDECAR_IN_CONTAINER"] != "" {
		t.Errorf("app container env %v", env)
	}
	if side.Image != "localhost:5000/kar/kar:latest" ||
		strings.Join(side.Args, " ") != "run -app hello -app_port 8080 -runtime_port 3500 -service greeter -actors Cart,Order -metrics_port 9464 -v info -h2c" {
		t.Errorf("kar container %s %v", side.Image, side.Args)
	}
	probe := "/kar/bin/kar probe -runtime_port 3500 "
	if p := side.LivenessProbe; p == nil || p.Exec == nil || strings.Join(p.Exec.Command, " ") != probe+"health" {
		t.Errorf("kar container liveness probe %+v", p)
	}
	if l := side.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Exec == nil || strings.Join(l.PreStop.Exec.Command, " ") != probe+"shutdown" {
		t.Errorf("kar container preStop %+v", l)
	}
	if got.Labels["kar.ibm.com/app"] != "hello" || got.Labels["kar.ibm.com/service"] != "greeter" {
		t.Errorf("pod labels %v", got.Labels)
	}
}

// examplePods reads examples/service-hello-js/deploy: the server Pod and
// the Pod the Job controller would make from the client Job.
func examplePods(t *testing.T, variant string) (server, client *corev1.Pod) {
	t.Helper()
	dir := filepath.Join("..", "..", "examples", "service-hello-js", "deploy")
	read := func(name string, into any) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.UnmarshalStrict(b, into); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	server = &corev1.Pod{}
	read("server"+variant+".yaml", server)
	var job batchv1.Job
	read("client"+variant+".yaml", &job)
	client = &corev1.Pod{ObjectMeta: job.Spec.Template.ObjectMeta, Spec: job.Spec.Template.Spec}
	client.Name = job.Name
	return server, client
}

func verifyCert(t *testing.T, certPEM, bundle []byte) {
	t.Helper()
	b, _ := pem.Decode(certPEM)
	if b == nil {
		t.Fatal("serving certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(bundle) {
		t.Fatal("CA bundle holds no certificate")
	}
	for _, host := range []string{"127.0.0.1", "kar-injector.kar-system.svc"} {
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("serving certificate for %s: %v", host, err)
		}
	}
}

func countCerts(bundle []byte) int {
	n := 0
	for rest := bundle; ; n++ {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			return n
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestManifestsApplyToAPIServer: what `kar k8s manifests` prints is
// accepted by a real API server as it is (kubectl apply -f would send the
// same objects).
func TestManifestsApplyToAPIServer(t *testing.T) {
	ctx, c := apiServer(t)
	for i, flags := range [][]string{{"-os", "-node-ports"}, {"-registry", "us.icr.io/space", "-registry-user", "iamapikey"}} {
		if i == 1 {
			t.Setenv("KAR_REGISTRY_PASSWORD", "s3cret")
		}
		out := kar(t, ctx, append([]string{"manifests"}, flags...)...)
		n := 0
		for _, doc := range strings.Split(out, "---\n")[1:] {
			var u unstructured.Unstructured
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				t.Fatal(err)
			}
			gvr, ok := map[string]schema.GroupVersionResource{
				"Namespace": gvrNamespace, "Secret": gvrSecret, "Service": gvrService, "StatefulSet": gvrStatefulSet,
				"Deployment": gvrDeployment, "MutatingWebhookConfiguration": gvrWebhook,
			}[u.GetKind()]
			if !ok {
				t.Fatalf("unexpected kind %s", u.GetKind())
			}
			var ri dynamic.ResourceInterface = c.Dynamic.Resource(gvr)
			if u.GetNamespace() != "" {
				ri = c.Dynamic.Resource(gvr).Namespace(u.GetNamespace())
			}
			if _, err := ri.Apply(ctx, u.GetName(), &u, metav1.ApplyOptions{FieldManager: "kubectl", Force: true}); err != nil {
				t.Errorf("manifests %v: %s %s rejected: %v", flags, u.GetKind(), u.GetName(), err)
			}
			n++
		}
		if n < 10 {
			t.Errorf("manifests %v: only %d objects", flags, n)
		}
	}
	ps, err := c.Typed.CoreV1().Secrets("default").Get(ctx, ImagePullSecret, metav1.GetOptions{})
	if err != nil || ps.Type != corev1.SecretTypeDockerConfigJson {
		t.Errorf("image-pull secret in default: %v", err)
	}
}
