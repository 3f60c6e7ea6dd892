package injector

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func TestParseAnnotations(t *testing.T) {
	tests := []struct {
		name    string
		ann     map[string]string
		want    *Annotations
		wantErr string // substring; the annotation the message must name
	}{
		{name: "no kar annotations", ann: map[string]string{"other/x": "1"}, want: nil},
		{name: "app only gets defaults", ann: map[string]string{AnnotationApp: "hello"},
			want: &Annotations{App: "hello", Verbose: "error", AppPort: 8080, RuntimePort: 3500, SidecarContainer: true}},
		{name: "in-container mode", ann: map[string]string{AnnotationApp: "hello", AnnotationSidecar: "false"},
			want: &Annotations{App: "hello", Verbose: "error", AppPort: 8080, RuntimePort: 3500}},
		{name: "extraArgs in KAR's comma form", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-v,info,-h2c"},
			want: &Annotations{App: "a", Verbose: "error", AppPort: 8080, RuntimePort: 3500, SidecarContainer: true, ExtraArgs: []string{"-v", "info", "-h2c"}}},
		{name: "extraArgs commas with spaces around", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": " -h2c , -request_timeout, 5s "},
			want: &Annotations{App: "a", Verbose: "error", AppPort: 8080, RuntimePort: 3500, SidecarContainer: true, ExtraArgs: []string{"-h2c", "-request_timeout", "5s"}}},
		{name: "extraArgs spaces with a value holding commas", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-actors A,B -h2c"},
			want: &Annotations{App: "a", Verbose: "error", AppPort: 8080, RuntimePort: 3500, SidecarContainer: true, ExtraArgs: []string{"-actors", "A,B", "-h2c"}}},
		{name: "extraArgs one flag", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-h2c=true"},
			want: &Annotations{App: "a", Verbose: "error", AppPort: 8080, RuntimePort: 3500, SidecarContainer: true, ExtraArgs: []string{"-h2c=true"}}},
		{name: "every annotation", ann: map[string]string{
			AnnotationApp: "hello", Prefix + "service": "greeter", Prefix + "actors": "Cart, Order",
			Prefix + "verbose": "debug", Prefix + "appPort": "9000", Prefix + "runtimePort": "3600",
			Prefix + "extraArgs": "-h2c -request_timeout 5s", Prefix + "sidecarContainer": "true"},
			want: &Annotations{App: "hello", Service: "greeter", Actors: []string{"Cart", "Order"}, Verbose: "debug",
				AppPort: 9000, RuntimePort: 3600, ExtraArgs: []string{"-h2c", "-request_timeout", "5s"}, SidecarContainer: true}},
		{name: "non-numeric app port", ann: map[string]string{AnnotationApp: "a", Prefix + "appPort": "http"}, wantErr: "kar.ibm.com/appPort"},
		{name: "port out of range", ann: map[string]string{AnnotationApp: "a", Prefix + "runtimePort": "70000"}, wantErr: "kar.ibm.com/runtimePort"},
		{name: "negative port", ann: map[string]string{AnnotationApp: "a", Prefix + "appPort": "-1"}, wantErr: "kar.ibm.com/appPort"},
		{name: "same ports", ann: map[string]string{AnnotationApp: "a", Prefix + "appPort": "3500"}, wantErr: "runtimePort"},
		{name: "actors with spaces", ann: map[string]string{AnnotationApp: "a", Prefix + "actors": "Cart Order"}, wantErr: "kar.ibm.com/actors"},
		{name: "actors with empty item", ann: map[string]string{AnnotationApp: "a", Prefix + "actors": "Cart,,Order"}, wantErr: "kar.ibm.com/actors"},
		{name: "actors as JSON", ann: map[string]string{AnnotationApp: "a", Prefix + "actors": `["Cart"]`}, wantErr: "kar.ibm.com/actors"},
		{name: "missing app", ann: map[string]string{Prefix + "service": "s"}, wantErr: "kar.ibm.com/app is missing"},
		{name: "empty app", ann: map[string]string{AnnotationApp: " "}, wantErr: "kar.ibm.com/app is empty"},
		{name: "bad app name", ann: map[string]string{AnnotationApp: "my app"}, wantErr: "kar.ibm.com/app"},
		{name: "bad service name", ann: map[string]string{AnnotationApp: "a", Prefix + "service": "a/b"}, wantErr: "kar.ibm.com/service"},
		{name: "bad verbose", ann: map[string]string{AnnotationApp: "a", Prefix + "verbose": "loud"}, wantErr: "kar.ibm.com/verbose"},
		{name: "bad sidecar bool", ann: map[string]string{AnnotationApp: "a", Prefix + "sidecarContainer": "yes"}, wantErr: "kar.ibm.com/sidecarContainer"},
		{name: "extra args not flags", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "node server.js"}, wantErr: "kar.ibm.com/extraArgs"},
		{name: "extra args not flags, commas", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "node,server.js"}, wantErr: "starting with '-'"},
		{name: "extra args empty comma item", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-v,,info"}, wantErr: "empty item"},
		{name: "extra args trailing comma", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-h2c,"}, wantErr: "empty item"},
		{name: "extra args mixed separators", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-h2c, -v info"}, wantErr: "mixes commas and spaces"},
		{name: "extra args value with commas in comma form", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-actors=A,B"}, wantErr: `"B" after "-actors=A"`},
		{name: "extra args two values", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-actors,A,B"}, wantErr: `"B" after "A" is neither a flag`},
		{name: "extra args with a command", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-v info node server.js"}, wantErr: `"node" after "info"`},
		{name: "extra args with --", ann: map[string]string{AnnotationApp: "a", Prefix + "extraArgs": "-h2c -- node"}, wantErr: `not "--"`},
		{name: "app not a label value", ann: map[string]string{AnnotationApp: "hello-"}, wantErr: "kar.ibm.com/app=\"hello-\": the Pod gets it as a label"},
		{name: "app too long for a label", ann: map[string]string{AnnotationApp: strings.Repeat("a", 64)}, wantErr: "must be no more than 63 characters"},
		{name: "service not a label value", ann: map[string]string{AnnotationApp: "a", Prefix + "service": "s."}, wantErr: "kar.ibm.com/service"},
		{name: "misspelt annotation", ann: map[string]string{AnnotationApp: "a", Prefix + "appport": "8080"}, wantErr: "unknown annotation kar.ibm.com/appport"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAnnotations(tt.ann)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

// Every field of Annotations must have a parser: a field added without one
// would deny every Pod.
func TestEveryAnnotationParses(t *testing.T) {
	ann := map[string]string{AnnotationApp: "a"}
	if _, err := ParseAnnotations(ann); err != nil {
		t.Fatal(err)
	}
	if n := len(KnownAnnotations()); n != 9 {
		t.Fatalf("%d annotations, want the 8 of the KAR contract and metricsPort", n)
	}
}

func basePod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", Annotations: map[string]string{}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:         "app",
			Image:        "example/app",
			Env:          []corev1.EnvVar{{Name: "USER_VAR", Value: "kept"}, {Name: "KAR_APP", Value: "stale"}},
			VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}},
		}},
			Volumes:          []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			ImagePullSecrets: []corev1.LocalObjectReference{{Name: "mine"}},
		},
	}
}

// apply runs the JSON patch through a real RFC 6902 implementation.
func apply(t *testing.T, pod *corev1.Pod, ops []Op) *corev1.Pod {
	t.Helper()
	doc, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	pj, err := json.Marshal(ops)
	if err != nil {
		t.Fatal(err)
	}
	p, err := jsonpatch.DecodePatch(pj)
	if err != nil {
		t.Fatalf("patch does not decode: %v\n%s", err, pj)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("patch does not apply: %v\n%s", err, pj)
	}
	var got corev1.Pod
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	return &got
}

func envMap(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func TestPatchInContainerMode(t *testing.T) {
	pod := basePod()
	pod.Annotations = map[string]string{AnnotationApp: "hello", Prefix + "service": "greeter", Prefix + "actors": "Cart",
		Prefix + "verbose": "info", Prefix + "extraArgs": "-h2c", Prefix + "appPort": "9000", AnnotationSidecar: "false"}
	a, err := ParseAnnotations(pod.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	got := apply(t, pod, Patch(pod, a, Options{SidecarImage: "img", ImagePullSecret: ImagePullSecret}))

	want := basePod()
	want.Annotations = pod.Annotations
	want.Labels = map[string]string{AnnotationApp: "hello", AnnotationService: "greeter"}
	want.Spec.Containers[0].Env = []corev1.EnvVar{
		{Name: "USER_VAR", Value: "kept"},
		{Name: "KAR_APP", Value: "hello"},
		{Name: "KAR_SIDECAR_IN_CONTAINER", Value: "true"},
		{Name: "KAR_APP_PORT", Value: "9000"},
		{Name: "KAR_RUNTIME_PORT", Value: "3500"},
		{Name: "KAR_EXTRA_ARGS", Value: "-service greeter -actors Cart -v info -h2c"},
	}
	want.Spec.Containers[0].VolumeMounts = append(want.Spec.Containers[0].VolumeMounts,
		corev1.VolumeMount{Name: ConfigVolumeName, MountPath: ConfigMountPath, ReadOnly: true})
	want.Spec.Volumes = append(want.Spec.Volumes, corev1.Volume{Name: ConfigVolumeName,
		VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: RuntimeConfigSecret}}})
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("patched pod:\n%s\nwant:\n%s", g, w)
	}
	if again := Patch(got, a, Options{}); len(again) != 0 {
		t.Fatalf("second mutation is not a no-op: %+v", again)
	}
}

func TestPatchSidecarMode(t *testing.T) {
	pod := basePod()
	pod.Labels = map[string]string{"app.kubernetes.io/name": "hello"}
	// No sidecarContainer annotation: a sidecar container is the default, as in KAR.
	pod.Annotations = map[string]string{AnnotationApp: "hello", Prefix + "service": "greeter",
		Prefix + "runtimePort": "3600", Prefix + "extraArgs": "-h2c"}
	a, err := ParseAnnotations(pod.Annotations)
	if err != nil {
		t.Fatal(err)
	}
	opt := Options{SidecarImage: "localhost:5000/kar/kar:latest", ImagePullSecret: ImagePullSecret, PullPolicy: corev1.PullAlways}
	got := apply(t, pod, Patch(pod, a, opt))

	if n := len(got.Spec.Containers); n != 2 {
		t.Fatalf("%d containers, want app + kar", n)
	}
	app, kar := got.Spec.Containers[0], got.Spec.Containers[1]
	if e := envMap(app); e["KAR_RUNTIME_PORT"] != "3600" || e["KAR_APP_PORT"] != "8080" || e["USER_VAR"] != "kept" || e["KAR_APP"] != "hello" ||
		e["KAR_SIDECAR_IN_CONTAINER"] != "" || e["KAR_EXTRA_ARGS"] != "" || len(e) != 4 {
		t.Errorf("app env = %v: want KAR_APP and the ports set and the rest kept", e)
	}
	if want := map[string]string{"app.kubernetes.io/name": "hello", AnnotationApp: "hello", AnnotationService: "greeter"}; !reflect.DeepEqual(got.Labels, want) {
		t.Errorf("labels = %v, want %v", got.Labels, want)
	}
	probe := []string{"/kar/bin/kar", "probe", "-runtime_port", "3600"}
	if p := kar.LivenessProbe; p == nil || p.Exec == nil || !reflect.DeepEqual(p.Exec.Command, append(probe, "health")) ||
		p.PeriodSeconds != 10 || p.TimeoutSeconds != 5 || p.FailureThreshold != 3 {
		t.Errorf("liveness probe = %+v, want kar probe health every 10s", p)
	}
	if l := kar.Lifecycle; l == nil || l.PreStop == nil || l.PreStop.Exec == nil || !reflect.DeepEqual(l.PreStop.Exec.Command, append(probe, "shutdown")) {
		t.Errorf("lifecycle = %+v, want a preStop kar probe shutdown", l)
	}
	if len(app.VolumeMounts) != 1 {
		t.Errorf("app container got mounts %v; in sidecar mode only the sidecar reads the config", app.VolumeMounts)
	}
	wantArgs := []string{"run", "-app", "hello", "-app_port", "8080", "-runtime_port", "3600", "-service", "greeter", "-metrics_port", "9464", "-h2c"}
	if kar.Name != "kar" || kar.Image != opt.SidecarImage || kar.ImagePullPolicy != corev1.PullAlways ||
		!reflect.DeepEqual(kar.Command, []string{"/kar/bin/kar"}) || !reflect.DeepEqual(kar.Args, wantArgs) {
		t.Errorf("sidecar = %s %s %v %v %s", kar.Name, kar.Image, kar.Command, kar.Args, kar.ImagePullPolicy)
	}
	if len(kar.Ports) != 2 || kar.Ports[0].ContainerPort != 3600 || kar.Ports[1].ContainerPort != DefaultMetricsPort {
		t.Errorf("sidecar ports = %v, want 3600 and the metrics port", kar.Ports)
	}
	if len(kar.Env) == 0 || kar.Env[0].ValueFrom == nil || kar.Env[0].ValueFrom.FieldRef.FieldPath != "status.podIP" {
		t.Errorf("sidecar env = %v, want the pod IP", kar.Env)
	}
	if len(kar.VolumeMounts) != 1 || kar.VolumeMounts[0].MountPath != ConfigMountPath {
		t.Errorf("sidecar mounts = %v", kar.VolumeMounts)
	}
	if !reflect.DeepEqual(got.Spec.ImagePullSecrets, []corev1.LocalObjectReference{{Name: "mine"}, {Name: ImagePullSecret}}) {
		t.Errorf("imagePullSecrets = %v", got.Spec.ImagePullSecrets)
	}
	if len(got.Spec.Volumes) != 2 || got.Spec.Volumes[0].Name != "data" {
		t.Errorf("volumes = %v", got.Spec.Volumes)
	}
	if again := Patch(got, a, opt); len(again) != 0 {
		t.Fatalf("second mutation is not a no-op: %+v", again)
	}
}

// TestScrapeAnnotations: an injected sidecar serves its metrics on the
// Pod's IP and the Pod asks Prometheus to scrape them, by default in
// sidecar mode, when asked in in-container mode, never over the Pod's own
// scrape annotations.
func TestScrapeAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name string
		ann  map[string]string
		port string // "": no scrape annotations, no -metrics_port
	}{
		{"sidecar mode by default", map[string]string{}, "9464"},
		{"sidecar mode on another port", map[string]string{Prefix + "metricsPort": "9100"}, "9100"},
		{"sidecar mode turned off", map[string]string{Prefix + "metricsPort": "0"}, ""},
		{"in-container mode: off unless asked", map[string]string{AnnotationSidecar: "false"}, ""},
		{"in-container mode asked", map[string]string{AnnotationSidecar: "false", Prefix + "metricsPort": "9100"}, "9100"},
		{"the Pod's own scrape annotations stay", map[string]string{ScrapeAnnotation: "true", ScrapePortAnnotation: "8000"}, "keep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := basePod()
			pod.Annotations = map[string]string{AnnotationApp: "a"}
			maps.Copy(pod.Annotations, tc.ann)
			a, err := ParseAnnotations(pod.Annotations)
			if err != nil {
				t.Fatal(err)
			}
			opt := Options{SidecarImage: "img"}
			got := apply(t, pod, Patch(pod, a, opt))
			args := strings.Join(got.Spec.Containers[len(got.Spec.Containers)-1].Args, " ")
			if !a.SidecarContainer {
				args = envMap(got.Spec.Containers[0])["KAR_EXTRA_ARGS"]
			}
			switch tc.port {
			case "":
				if _, ok := got.Annotations[ScrapeAnnotation]; ok || strings.Contains(args, "-metrics_port") {
					t.Errorf("annotations %v, args %q: want no metrics port", got.Annotations, args)
				}
			case "keep":
				if got.Annotations[ScrapePortAnnotation] != "8000" || got.Annotations[ScrapePathAnnotation] != "" || !strings.Contains(args, "-metrics_port 9464") {
					t.Errorf("annotations %v, args %q: want the Pod's own kept and the sidecar's port still served", got.Annotations, args)
				}
			default:
				want := map[string]string{ScrapeAnnotation: "true", ScrapePortAnnotation: tc.port, ScrapePathAnnotation: "/metrics"}
				for k, v := range want {
					if got.Annotations[k] != v {
						t.Errorf("annotation %s = %q, want %q", k, got.Annotations[k], v)
					}
				}
				if !strings.Contains(args, "-metrics_port "+tc.port) {
					t.Errorf("kar run args %q: want -metrics_port %s", args, tc.port)
				}
			}
			if again := Patch(got, a, opt); len(again) != 0 {
				t.Errorf("second mutation is not a no-op: %+v", again)
			}
		})
	}
	for _, p := range []string{"8080", "3500", "-1", "x", "70000"} {
		if _, err := ParseAnnotations(map[string]string{AnnotationApp: "a", Prefix + "metricsPort": p}); err == nil || !strings.Contains(err.Error(), "metricsPort") {
			t.Errorf("metricsPort %s: err %v, want one naming the annotation", p, err)
		}
	}
}

// A bare Pod (no env, mounts, volumes or pull secrets) exercises the
// "create the list" branches.
func TestPatchBarePod(t *testing.T) {
	for _, sidecar := range []string{"false", "true"} {
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Annotations: map[string]string{AnnotationApp: "a", Prefix + "sidecarContainer": sidecar}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "i"}, {Name: "d", Image: "i"}}}}
		a, err := ParseAnnotations(pod.Annotations)
		if err != nil {
			t.Fatal(err)
		}
		opt := Options{SidecarImage: "k", ImagePullSecret: ImagePullSecret}
		got := apply(t, pod, Patch(pod, a, opt))
		for _, c := range got.Spec.Containers[:2] {
			if envMap(c)["KAR_RUNTIME_PORT"] != "3500" {
				t.Errorf("sidecar=%s: container %s env %v", sidecar, c.Name, c.Env)
			}
		}
		if len(got.Spec.Volumes) != 1 {
			t.Errorf("sidecar=%s: volumes %v", sidecar, got.Spec.Volumes)
		}
		if !reflect.DeepEqual(got.Labels, map[string]string{AnnotationApp: "a"}) {
			t.Errorf("sidecar=%s: labels %v", sidecar, got.Labels)
		}
		if again := Patch(got, a, opt); len(again) != 0 {
			t.Errorf("sidecar=%s: second mutation %+v", sidecar, again)
		}
	}
}

// The labels are added one by one to a Pod that has labels, as one map to
// a Pod without, and a label already right is left alone.
func TestLabelOps(t *testing.T) {
	tests := []struct {
		name    string
		service string
		have    map[string]string
		want    []Op
	}{
		{name: "no labels", have: nil,
			want: []Op{{Op: "add", Path: "/metadata/labels", Value: map[string]string{AnnotationApp: "a"}}}},
		{name: "no labels, a service", service: "s", have: map[string]string{},
			want: []Op{{Op: "add", Path: "/metadata/labels", Value: map[string]string{AnnotationApp: "a", AnnotationService: "s"}}}},
		{name: "other labels", service: "s", have: map[string]string{"x": "y"},
			want: []Op{{Op: "add", Path: "/metadata/labels/kar.ibm.com~1app", Value: "a"}, {Op: "add", Path: "/metadata/labels/kar.ibm.com~1service", Value: "s"}}},
		{name: "app label already there", service: "s", have: map[string]string{AnnotationApp: "a"},
			want: []Op{{Op: "add", Path: "/metadata/labels/kar.ibm.com~1service", Value: "s"}}},
		{name: "all there", have: map[string]string{AnnotationApp: "a", "x": "y"}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Annotations{App: "a", Service: tt.service}
			got := labelOps(tt.have, a.Labels())
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ops %+v, want %+v", got, tt.want)
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Labels: tt.have}}
			if len(got) > 0 {
				if p := apply(t, pod, got); p.Labels[AnnotationApp] != "a" || p.Labels[AnnotationService] != tt.service {
					t.Fatalf("labels after the patch: %v", p.Labels)
				}
			}
		})
	}
}

func TestCheckLabels(t *testing.T) {
	a := &Annotations{App: "a", Service: "s"}
	tests := []struct {
		have    map[string]string
		wantErr string
	}{
		{have: nil},
		{have: map[string]string{AnnotationApp: "a", AnnotationService: "s", "x": "y"}},
		{have: map[string]string{AnnotationApp: "b"}, wantErr: `label kar.ibm.com/app="b" differs from annotation kar.ibm.com/app="a"`},
		{have: map[string]string{AnnotationApp: "a", AnnotationService: "t"}, wantErr: `label kar.ibm.com/service="t"`},
	}
	for _, tt := range tests {
		err := a.CheckLabels(tt.have)
		if (err == nil) != (tt.wantErr == "") || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckLabels(%v) = %v, want %q", tt.have, err, tt.wantErr)
		}
	}
}

func review(t *testing.T, ns string, pod *corev1.Pod) []byte {
	t.Helper()
	raw, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "uid-1", Kind: metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			Namespace: ns, Operation: admissionv1.Create, Object: runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func post(t *testing.T, h http.Handler, method, ct string, body []byte) (*httptest.ResponseRecorder, *admissionv1.AdmissionReview) {
	t.Helper()
	req := httptest.NewRequest(method, Path, bytes.NewReader(body))
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		return rec, nil
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
		t.Fatalf("response is not an AdmissionReview: %v: %s", err, rec.Body)
	}
	return rec, &out
}

func TestHandlerReviews(t *testing.T) {
	h := &Handler{Options: Options{SidecarImage: "k"}, Log: slog.New(slog.DiscardHandler)}
	good := basePod()
	good.Annotations = map[string]string{AnnotationApp: "hello"}
	bad := basePod()
	bad.Annotations = map[string]string{AnnotationApp: "hello", Prefix + "appPort": "eighty"}
	plain := basePod()

	_, out := post(t, h, "POST", "application/json", review(t, "default", good))
	if out.Response.UID != "uid-1" || !out.Response.Allowed || out.Response.PatchType == nil || len(out.Response.Patch) == 0 {
		t.Fatalf("annotated pod: %+v", out.Response)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
		t.Errorf("response type %s/%s", out.APIVersion, out.Kind)
	}
	_, out = post(t, h, "POST", "application/json", review(t, "default", bad))
	if out.Response.Allowed || out.Response.Result == nil || !strings.Contains(out.Response.Result.Message, "kar.ibm.com/appPort") {
		t.Fatalf("bad annotation not denied by name: %+v", out.Response)
	}
	_, out = post(t, h, "POST", "application/json", review(t, "default", plain))
	if !out.Response.Allowed || out.Response.Patch != nil {
		t.Fatalf("pod without kar annotations was changed: %+v", out.Response)
	}
	for _, ns := range []string{"kar-system", "kube-system", "kube-public"} {
		_, out = post(t, h, "POST", "application/json", review(t, ns, bad))
		if !out.Response.Allowed || out.Response.Patch != nil {
			t.Fatalf("namespace %s: pod touched: %+v", ns, out.Response)
		}
	}
}

// Malformed input never panics and always gets a clear 4xx or a denial.
func TestHandlerMalformed(t *testing.T) {
	h := &Handler{Log: slog.New(slog.DiscardHandler)}
	tests := []struct {
		name     string
		method   string
		ct       string
		body     string
		wantCode int
		wantMsg  string
	}{
		{"GET", "GET", "", "", 405, "POST"},
		{"empty body", "POST", "application/json", "", 400, "not an AdmissionReview"},
		{"not json", "POST", "application/json", "hello", 400, "not an AdmissionReview"},
		{"json array", "POST", "application/json", "[1,2]", 400, "not an AdmissionReview"},
		{"null", "POST", "application/json", "null", 400, "no request"},
		{"no request", "POST", "application/json", `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, 400, "no request"},
		{"v1beta1", "POST", "application/json", `{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{"uid":"u"}}`, 400, "admissionReviewVersions"},
		{"wrong content type", "POST", "text/plain", "{}", 415, "application/json"},
		{"request wrong types", "POST", "application/json", `{"request":{"uid":5}}`, 400, "not an AdmissionReview"},
		{"too large", "POST", "application/json", `{"request":{"uid":"` + strings.Repeat("x", maxReviewBytes) + `"}}`, 413, "larger"},
		{"truncated", "POST", "application/json", string(review(t, "default", basePod()))[:100], 400, "not an AdmissionReview"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec, _ := post(t, h, tt.method, tt.ct, []byte(tt.body))
			if rec.Code != tt.wantCode || !strings.Contains(rec.Body.String(), tt.wantMsg) {
				t.Fatalf("got %d %q, want %d containing %q", rec.Code, rec.Body.String(), tt.wantCode, tt.wantMsg)
			}
		})
	}

	// Well-formed reviews with odd contents are answered, not crashed on.
	odd := []struct {
		name    string
		req     string
		allowed bool
		msg     string
	}{
		{"no object", `{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE"}`, false, "cannot decode the Pod"},
		{"object not a pod", `{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":"x"}}`, false, "cannot decode the Pod"},
		{"annotations wrong type", `{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":[1]}}}`, false, "cannot decode the Pod"},
		{"pod without containers", `{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"kar.ibm.com/app":"a"}}}}`, true, ""},
		{"a deployment", `{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{}}`, true, ""},
		{"a deployment with a bad template", `{"uid":"u","name":"d","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{"spec":{"template":{"metadata":{"annotations":{"kar.ibm.com/app":"a","kar.ibm.com/verbose":"loud"}}}}}}`, false, "Pod template of Deployment d: annotation kar.ibm.com/verbose"},
		{"a deployment with a good template", `{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"UPDATE","object":{"spec":{"template":{"metadata":{"annotations":{"kar.ibm.com/app":"a"}}}}}}`, true, ""},
		{"a cronjob with a bad template", `{"uid":"u","kind":{"group":"batch","version":"v1","kind":"CronJob"},"operation":"CREATE","object":{"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"annotations":{"kar.ibm.com/actors":"A"}}}}}}}}`, false, "kar.ibm.com/app is missing"},
		{"a job with a non-string annotation", `{"uid":"u","kind":{"group":"batch","version":"v1","kind":"Job"},"operation":"CREATE","object":{"spec":{"template":{"metadata":{"annotations":{"kar.ibm.com/app":5}}}}}}`, false, "kar.ibm.com/app is empty"},
		{"a deployment whose template label differs", `{"uid":"u","name":"d","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{"spec":{"template":{"metadata":{"labels":{"kar.ibm.com/app":"b"},"annotations":{"kar.ibm.com/app":"a"}}}}}}`, false, "Pod template of Deployment d: label kar.ibm.com/app=\"b\" differs"},
		{"a pod whose label differs", `{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"labels":{"kar.ibm.com/app":"b"},"annotations":{"kar.ibm.com/app":"a"}}}}`, false, "label kar.ibm.com/app=\"b\" differs"},
		{"a job with template not an object", `{"uid":"u","kind":{"group":"batch","version":"v1","kind":"Job"},"operation":"CREATE","object":{"spec":{"template":[1]}}}`, true, ""},
		{"a deployment delete", `{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"DELETE"}`, true, ""},
		{"an update", `{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"UPDATE","object":{}}`, true, ""},
	}
	for _, tt := range odd {
		t.Run(tt.name, func(t *testing.T) {
			rec, out := post(t, h, "POST", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":`+tt.req+`}`))
			if out == nil {
				t.Fatalf("got %d %s, want an AdmissionReview", rec.Code, rec.Body)
			}
			if out.Response.UID != "u" || out.Response.Allowed != tt.allowed {
				t.Fatalf("response %+v, want allowed=%v", out.Response, tt.allowed)
			}
			if tt.msg != "" && !strings.Contains(out.Response.Result.Message, tt.msg) {
				t.Fatalf("message %q, want %q", out.Response.Result.Message, tt.msg)
			}
		})
	}
}

// FuzzHandler: whatever the body, the handler answers without panicking.
func FuzzHandler(f *testing.F) {
	f.Add([]byte(`{"request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"kar.ibm.com/app":"a","kar.ibm.com/actors":"A,B"}}}}}`))
	f.Add([]byte(`{"request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"kar.ibm.com/app":"a","kar.ibm.com/sidecarContainer":"true"}},"spec":{"containers":[{"name":"kar"}]}}}}`))
	f.Add([]byte(`{}`))
	h := &Handler{Log: slog.New(slog.DiscardHandler)}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest("POST", Path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 && (rec.Code < 400 || rec.Code > 499) {
			t.Fatalf("status %d", rec.Code)
		}
	})
}
