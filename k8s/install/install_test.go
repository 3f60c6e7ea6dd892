package install

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/codeengine/cetest"
)

func generated(t *testing.T, o *Options) *Generated {
	t.Helper()
	g, err := Generate(context.Background(), nil, o, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func find[T Object](objs []Object, name string) T {
	var zero T
	for _, o := range objs {
		if v, ok := o.(T); ok && o.GetName() == name {
			return v
		}
	}
	return zero
}

func TestImages(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{}, "localhost:5000/kar/kar:latest"},
		{Options{Release: "1.3.10"}, "quay.io/ibm/kar-sidecar:1.3.10"},
		{Options{Registry: "us.icr.io/myspace/"}, "us.icr.io/myspace/kar:latest"},
		{Options{Registry: "us.icr.io/myspace", Release: "2.0"}, "us.icr.io/myspace/kar:2.0"},
	}
	for _, tt := range tests {
		if got := tt.o.Image("kar"); got != tt.want {
			t.Errorf("%+v: %s, want %s", tt.o, got, tt.want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		o    Options
		want string
	}{
		{Options{}, ""},
		{Options{Registry: "localhost:5000/kar"}, ""},
		{Options{Registry: "https://us.icr.io"}, "-registry"},
		{Options{Registry: "host:port/x"}, "-registry"},
		{Options{Registry: "us.icr.io", RegistryPassword: "p"}, "-registry-user"},
		{Options{RegistryUser: "u"}, "need -registry"},
		{Options{Release: "1.0 beta"}, "-r"},
		{Options{PullPolicy: "Sometimes"}, "-image-pull-policy"},
		{Options{WebhookURL: "http://127.0.0.1:1/x"}, "-webhook-url"},
		{Options{ManagedCredentials: "f", NodePorts: true}, "-node-ports"},
	}
	for _, tt := range tests {
		err := tt.o.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%+v: %v, want %q", tt.o, err, tt.want)
		}
	}
}

func TestObjectsDefault(t *testing.T) {
	o := &Options{}
	objs, err := Objects(o, generated(t, o))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RedisName, KafkaName} {
		sts := find[*appsv1.StatefulSet](objs, name)
		if sts == nil {
			t.Fatalf("no statefulset %s", name)
		}
		if sc := sts.Spec.Template.Spec.SecurityContext; sc.RunAsUser == nil || sc.FSGroup == nil {
			t.Errorf("%s: plain Kubernetes wants the image's UID and fsGroup for its volume", name)
		}
		if len(sts.Spec.VolumeClaimTemplates) != 1 {
			t.Errorf("%s: no persistent volume", name)
		}
	}
	dep := find[*appsv1.Deployment](objs, InjectorName)
	args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " ")
	if !strings.Contains(args, "-port 8443") || !strings.Contains(args, "-sidecar_image localhost:5000/kar/kar:latest") || strings.Contains(args, "image_pull_secret") {
		t.Errorf("injector args %s", args)
	}
	wh := find[*admissionregistrationv1.MutatingWebhookConfiguration](objs, WebhookName)
	svc := wh.Webhooks[0].ClientConfig.Service
	if svc == nil || svc.Name != InjectorName || svc.Namespace != Namespace || *svc.Path != "/inject-sidecar" || len(wh.Webhooks[0].ClientConfig.CABundle) == 0 {
		t.Errorf("webhook client config %+v", wh.Webhooks[0].ClientConfig)
	}
	if find[*corev1.Secret](objs, ImagePullSecret) != nil {
		t.Error("image-pull secret without -registry")
	}
	if find[*corev1.Service](objs, RedisName+"-external") != nil {
		t.Error("node ports without -node-ports")
	}
}

func TestObjectsOpenShiftRegistryNodePorts(t *testing.T) {
	o := &Options{OpenShift: true, Registry: "us.icr.io/space", RegistryUser: "iamapikey", RegistryPassword: "s3cret", Release: "1.0", NodePorts: true}
	objs, err := Objects(o, generated(t, o))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{RedisName, KafkaName} {
		sc := find[*appsv1.StatefulSet](objs, name).Spec.Template.Spec.SecurityContext
		if sc.RunAsUser != nil || sc.RunAsGroup != nil || sc.FSGroup != nil {
			t.Errorf("%s: OpenShift assigns UIDs; got %+v", name, sc)
		}
	}
	ps := find[*corev1.Secret](objs, ImagePullSecret)
	if ps == nil || ps.Type != corev1.SecretTypeDockerConfigJson {
		t.Fatalf("image-pull secret %+v", ps)
	}
	var dc struct {
		Auths map[string]struct{ Username, Password, Auth string }
	}
	if err := json.Unmarshal(ps.Data[corev1.DockerConfigJsonKey], &dc); err != nil || dc.Auths["us.icr.io"].Password != "s3cret" {
		t.Errorf("docker config %s: %v", ps.Data[corev1.DockerConfigJsonKey], err)
	}
	dep := find[*appsv1.Deployment](objs, InjectorName)
	if dep.Spec.Template.Spec.Containers[0].Image != "us.icr.io/space/kar-injector:1.0" || len(dep.Spec.Template.Spec.ImagePullSecrets) != 1 {
		t.Errorf("injector pod %+v", dep.Spec.Template.Spec)
	}
	if args := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "-image_pull_secret "+ImagePullSecret) {
		t.Errorf("injector args %s", args)
	}
	if s := find[*corev1.Service](objs, KafkaName+"-external"); s == nil || s.Spec.Ports[0].NodePort != KafkaNodePort {
		t.Errorf("kafka node port service %+v", s)
	}
	env := find[*appsv1.StatefulSet](objs, KafkaName).Spec.Template.Spec.Containers[0].Env
	for _, e := range env {
		if e.Name == "KAFKA_ADVERTISED_LISTENERS" && !strings.Contains(e.Value, "EXTERNAL://localhost:31093") {
			t.Errorf("kafka advertises %s", e.Value)
		}
	}
}

const credsJSON = `[
 {"name":"kar-creds","source_crn":"crn:v1:bluemix:public:databases-for-redis:us-south:a/1:2::",
  "credentials":{"connection":{"rediss":{"hosts":[{"hostname":"r.databases.appdomain.cloud","port":31234}],
   "authentication":{"username":"ibm_cloud_u","password":"rpw"},"certificate":{"certificate_base64":"Q0E="}}}}},
 {"name":"kar-creds","source_crn":"crn:v1:bluemix:public:messagehub:us-south:a/1:3::",
  "credentials":{"kafka_brokers_sasl":["b0:9093","b1:9093"],"user":"token","password":"kpw"}}
]`

func TestManagedConfigFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ctx := context.Background()
	cfg, err := ManagedConfig(ctx, write("a.json", credsJSON))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"redis_host": "r.databases.appdomain.cloud", "redis_port": "31234", "redis_user": "ibm_cloud_u",
		"redis_password": "rpw", "redis_ca": "Q0E=", "redis_enable_tls": "true", "kafka_brokers": "b0:9093,b1:9093",
		"kafka_password": "kpw", "kafka_enable_tls": "true", "kafka_version": "2.8.0"}
	for k, v := range want {
		if cfg[k] != v {
			t.Errorf("%s = %q, want %q", k, cfg[k], v)
		}
	}
	page, err := ManagedConfig(ctx, write("b.json", `{"resources":`+credsJSON+`}`))
	if err != nil || page["kafka_password"] != "kpw" {
		t.Errorf("resource_keys page: %v", err)
	}

	t.Setenv("IBMCLOUD_API_KEY", "")
	bad := []struct{ name, content, want string }{
		{"missing.json", "", "needs IBMCLOUD_API_KEY"},
		{"text.json", "hello", "not IBM Cloud service-key JSON"},
		{"only-redis.json", `[` + strings.SplitN(credsJSON[1:], "},\n {", 2)[0] + `}]`, "no key for a Event Streams instance"},
		{"no-password.json", strings.Replace(credsJSON, `"password":"kpw"`, `"x":"y"`, 1), "lacks password"},
		{"bad-port.json", strings.Replace(credsJSON, `31234`, `"x"`, 1), "hosts[0].port"},
	}
	for _, b := range bad {
		p := filepath.Join(dir, b.name)
		if b.content != "" {
			p = write(b.name, b.content)
		}
		_, err := ManagedConfig(ctx, p)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want %q", b.name, err, b.want)
		}
		if err != nil && (strings.Contains(err.Error(), "rpw") || strings.Contains(err.Error(), "kpw")) {
			t.Errorf("%s: error shows a password: %v", b.name, err)
		}
	}

	o := &Options{ManagedCredentials: filepath.Join(dir, "a.json")}
	objs, err := Objects(o, generated(t, o))
	if err != nil {
		t.Fatal(err)
	}
	if find[*appsv1.StatefulSet](objs, RedisName) != nil || find[*appsv1.StatefulSet](objs, KafkaName) != nil {
		t.Error("-m still installs in-cluster Redis/Kafka")
	}
	if rc := find[*corev1.Secret](objs, RuntimeConfigSecret); string(rc.Data["kafka_brokers"]) != "b0:9093,b1:9093" {
		t.Errorf("runtime config %v", rc.Data)
	}
}

// TestManagedConfigByName: -m CREDENTIAL reads the keys from Resource
// Controller (the strict local double of the Code Engine tooling).
func TestManagedConfigByName(t *testing.T) {
	d := cetest.New(t, "test-api-key")
	d.AddKarCredential("kar-creds")
	for _, kv := range d.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg, err := ManagedConfig(context.Background(), "kar-creds")
	if err != nil {
		t.Fatal(err)
	}
	if cfg["redis_host"] != cetest.RedisHost || cfg["redis_password"] != cetest.RedisPassword || cfg["kafka_password"] != cetest.KafkaPassword ||
		cfg["kafka_brokers"] != strings.Join(cetest.KafkaBrokers, ",") || cfg["redis_ca"] != cetest.RedisCA {
		t.Errorf("config from the double: %v", cfg)
	}
	_, err = ManagedConfig(context.Background(), "nope")
	if err == nil || !strings.Contains(err.Error(), `no service credential named "nope"`) {
		t.Errorf("unknown credential: %v", err)
	}
	t.Setenv("IBMCLOUD_API_KEY", "wrong")
	_, err = ManagedConfig(context.Background(), "kar-creds")
	if err == nil || strings.Contains(err.Error(), "wrong") || strings.Contains(err.Error(), "test-api-key") {
		t.Errorf("bad API key: %v", err)
	}
}

// TestManifests: kar k8s manifests prints every object as YAML, documents
// that decode, with the default namespace enabled.
func TestManifests(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"manifests", "-os"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var kinds []string
	for _, doc := range strings.Split(out.String(), "---\n")[1:] {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, doc)
		}
		md := m["metadata"].(map[string]any)
		kinds = append(kinds, m["kind"].(string)+"/"+md["name"].(string))
		if _, ok := m["status"]; ok {
			t.Errorf("%s has a status", md["name"])
		}
	}
	want := []string{"Namespace/kar-system", "Secret/kar.ibm.com.runtime-config", "Secret/kar-redis-config", "Service/kar-redis",
		"StatefulSet/kar-redis", "Service/kar-kafka", "StatefulSet/kar-kafka", "Secret/kar-injector-tls", "Service/kar-injector",
		"Deployment/kar-injector", "MutatingWebhookConfiguration/kar-injector", "Service/kar-scaler", "Deployment/kar-scaler", "Namespace/default", "Secret/kar.ibm.com.runtime-config"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("manifests:\n%v\nwant\n%v", kinds, want)
	}
	if strings.Contains(out.String(), "runAsUser") {
		t.Error("-os manifests fix a UID")
	}
}

// TestManifestsMonitoring: -monitoring adds a PodMonitor selecting the
// injected Pods' metrics port in every namespace and the dashboard in a
// ConfigMap for Grafana's sidecar; deploy has no such flag.
func TestManifestsMonitoring(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"manifests", "-monitoring"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	docs := map[string]map[string]any{}
	for _, doc := range strings.Split(out.String(), "---\n")[1:] {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, doc)
		}
		docs[m["kind"].(string)] = m
	}
	pm := docs["PodMonitor"]
	if pm == nil {
		t.Fatalf("no PodMonitor in\n%s", out.String())
	}
	spec, _ := json.Marshal(pm["spec"])
	for _, want := range []string{`"any":true`, `"key":"kar.ibm.com/app","operator":"Exists"`, `"port":"kar-metrics"`, `"path":"/metrics"`} {
		if !strings.Contains(string(spec), want) {
			t.Errorf("PodMonitor spec %s: no %s", spec, want)
		}
	}
	if pm["apiVersion"] != "monitoring.coreos.com/v1" {
		t.Errorf("PodMonitor apiVersion %v", pm["apiVersion"])
	}
	cm := docs["ConfigMap"]
	if cm == nil {
		t.Fatal("no dashboard ConfigMap")
	}
	if l := cm["metadata"].(map[string]any)["labels"].(map[string]any); l["grafana_dashboard"] != "1" {
		t.Errorf("ConfigMap labels %v: want grafana_dashboard=1", l)
	}
	var dash map[string]any
	if err := json.Unmarshal([]byte(cm["data"].(map[string]any)[GrafanaDashboardFile].(string)), &dash); err != nil || dash["uid"] != "kar-mesh" {
		t.Errorf("dashboard in the ConfigMap: %v (uid %v)", err, dash["uid"])
	}

	out.Reset()
	if code := Main(context.Background(), []string{"manifests"}, &out, &errb); code != 0 || strings.Contains(out.String(), "PodMonitor") {
		t.Errorf("manifests without -monitoring: exit %d, PodMonitor %v", code, strings.Contains(out.String(), "PodMonitor"))
	}
	if code := Main(context.Background(), []string{"deploy", "-monitoring"}, &out, &errb); code != 2 {
		t.Errorf("deploy -monitoring: exit %d, want 2 (manifests only)", code)
	}
}

func TestCLIUsage(t *testing.T) {
	t.Setenv("IBMCLOUD_API_KEY", "")
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "missing command"},
		{[]string{"help"}, 0, "namespace enable NS"},
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"namespace"}, 2, "missing action"},
		{[]string{"namespace", "frob"}, 2, "unknown action"},
		{[]string{"namespace", "enable"}, 2, "missing namespace"},
		{[]string{"namespace", "enable", "a", "b"}, 2, "unexpected argument"},
		{[]string{"namespace", "disable", "kar-system"}, 2, "kar never injects there"},
		{[]string{"deploy", "-h"}, 0, "-webhook-url"},
		{[]string{"manifests", "stray"}, 2, "unexpected argument"},
		{[]string{"manifests", "-m", "/nonexistent"}, 1, "needs IBMCLOUD_API_KEY"},
		{[]string{"deploy", "-nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"undeploy", "-h"}, 0, "-kubeconfig"},
		{[]string{"namespace", "enable", "-h"}, 0, "Usage: kar k8s namespace enable [flags] NAMESPACE"},
		{[]string{"undeploy", "-context"}, 2, "flag needs an argument: -context"},
	}
	for _, tt := range tests {
		var out, errb bytes.Buffer
		code := Main(context.Background(), tt.args, &out, &errb)
		// Help on stdout, everything else on stderr.
		got := errb.String()
		if code == 0 {
			got = out.String()
		}
		if code != tt.code || !strings.Contains(got, tt.want) {
			t.Errorf("kar k8s %v: exit %d, %q %q; want %d and %q", tt.args, code, out.String(), errb.String(), tt.code, tt.want)
		}
	}
}
