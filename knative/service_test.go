package knative

import (
	"context"
	"encoding/json"
	"flag"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/kar-runtime/kar/entrypoint"
)

func app() entrypoint.App {
	return entrypoint.App{
		Component: entrypoint.Component{App: "dp", Service: "philosophers", Actors: []string{"Cafe", "Table"}, Port: 8080, Verbose: "info"},
		Name:      "dp-server",
		Image:     "localhost:5000/kar/examples/actors-dp-js",
		Scale:     3,
		Env:       []entrypoint.Var{{Name: "MESSAGE", Value: "hello world"}},
	}
}

func envMap(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

func TestServiceFixedScaleAndContract(t *testing.T) {
	ctx := context.Background()
	svc, err := Service(ctx, app(), "")
	if err != nil {
		t.Fatal(err)
	}
	ann := svc.Spec.Template.Annotations
	for _, k := range []string{"autoscaling.knative.dev/min-scale", "autoscaling.knative.dev/max-scale", "autoscaling.knative.dev/initial-scale"} {
		if ann[k] != "3" {
			t.Errorf("%s = %q, want 3", k, ann[k])
		}
	}
	if svc.Labels["networking.knative.dev/visibility"] != "cluster-local" {
		t.Errorf("labels %v: want cluster-local visibility", svc.Labels)
	}
	if svc.Annotations["autoscaling.knative.dev/min-scale"] != "" {
		t.Error("autoscaling annotation on the Service metadata: Knative rejects it there")
	}
	if cc := svc.Spec.Template.Spec.ContainerConcurrency; cc == nil || *cc != 0 {
		t.Errorf("containerConcurrency = %v, want 0", cc)
	}
	c := svc.Spec.Template.Spec.Containers[0]
	if len(c.Ports) != 1 || c.Ports[0].Name != "http1" || c.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports = %+v", c.Ports)
	}
	env := envMap(c)
	want := map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "dp", "KAR_APP_PORT": "8080",
		"KAR_SERVICE": "philosophers", "KAR_ACTORS": "Cafe,Table", "KAR_VERBOSE": "info", "MESSAGE": "hello world"}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if len(c.EnvFrom) != 1 || c.EnvFrom[0].SecretRef == nil || c.EnvFrom[0].SecretRef.Name != "kar.ibm.com.runtime-config" {
		t.Errorf("envFrom = %+v", c.EnvFrom)
	}
}

func TestServiceVariants(t *testing.T) {
	ctx := context.Background()
	a := app()
	a.Externalize, a.H2C, a.Port, a.Scale, a.RegistrySecret = true, true, 9000, 1, "icr-pull"
	svc, err := Service(ctx, a, "prod")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := svc.Labels["networking.knative.dev/visibility"]; ok {
		t.Error("externalized service still cluster-local")
	}
	c := svc.Spec.Template.Spec.Containers[0]
	if c.Ports[0].Name != "h2c" || c.Ports[0].ContainerPort != 9000 || envMap(c)["KAR_APP_PORT"] != "9000" || envMap(c)["KAR_H2C"] != "true" {
		t.Errorf("port %+v env %v", c.Ports, envMap(c))
	}
	if svc.Namespace != "prod" || svc.Spec.Template.Spec.ImagePullSecrets[0].Name != "icr-pull" {
		t.Errorf("namespace %q pull secrets %v", svc.Namespace, svc.Spec.Template.Spec.ImagePullSecrets)
	}
}

func TestServiceRejects(t *testing.T) {
	cases := []struct {
		name    string
		edit    func(*entrypoint.App)
		wantErr string
	}{
		{"reserved queue-proxy port", func(a *entrypoint.App) { a.Port = 8012 }, "8012"},
		{"bad name", func(a *entrypoint.App) { a.Name = "Big_Name" }, "-name"},
		{"no image", func(a *entrypoint.App) { a.Image = "" }, "no -image"},
		{"zero scale", func(a *entrypoint.App) { a.Scale = 0 }, "-scale 0"},
		{"bad app", func(a *entrypoint.App) { a.App = "a b" }, "application name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := app()
			tc.edit(&a)
			_, err := Service(context.Background(), a, "")
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestYAMLRoundTripAndFixedScale(t *testing.T) {
	ctx := context.Background()
	svc, err := Service(ctx, app(), "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := YAML(svc)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{"apiVersion: serving.knative.dev/v1", "kind: Service", "autoscaling.knative.dev/min-scale: \"3\"", "name: http1"} {
		if !strings.Contains(s, want) {
			t.Errorf("manifest lacks %q:\n%s", want, s)
		}
	}
	for _, unwanted := range []string{"status:", "creationTimestamp", "resources: {}"} {
		if strings.Contains(s, unwanted) {
			t.Errorf("manifest holds %q:\n%s", unwanted, s)
		}
	}
	back, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(ctx, back); err != nil {
		t.Fatal(err)
	}
	// A hand edit that breaks the fixed scale is caught.
	back.Spec.Template.Annotations["autoscaling.knative.dev/max-scale"] = "5"
	if err := Validate(ctx, back); err == nil || !strings.Contains(err.Error(), "fixed scale") {
		t.Fatalf("error = %v, want a fixed-scale error", err)
	}
	// Knative's own validation: min-scale above max-scale.
	back.Spec.Template.Annotations["autoscaling.knative.dev/min-scale"] = "9"
	if err := Validate(ctx, back); err == nil || !strings.Contains(err.Error(), "min-scale") {
		t.Fatalf("error = %v, want Knative's min-scale error", err)
	}
	if _, err := Parse([]byte("apiVersion: v1\nkind: Pod\n")); err == nil {
		t.Fatal("a Pod parsed as a Knative Service")
	}
}

// TestExampleManifests: every examples/*/deploy/knative*.yaml is a valid,
// fixed-scale Knative Service using the runtime-config secret.
func TestExampleManifests(t *testing.T) {
	files, err := filepath.Glob("../examples/*/deploy/knative*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Skip("no example manifests")
	}
	for _, f := range files {
		t.Run(f, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			for i, doc := range strings.Split(string(b), "\n---\n") {
				if strings.TrimSpace(doc) == "" {
					continue
				}
				svc, err := Parse([]byte(doc))
				if err != nil {
					t.Fatalf("document %d: %v", i, err)
				}
				if err := Validate(context.Background(), svc); err != nil {
					t.Fatalf("document %d: %v", i, err)
				}
				c := svc.Spec.Template.Spec.Containers[0]
				if envMap(c)["KAR_SIDECAR_IN_CONTAINER"] != "true" || envMap(c)["KAR_APP"] == "" {
					t.Errorf("document %d: container env lacks the KAR_ contract", i)
				}
			}
		})
	}
}

// TestExampleManifestsAreGenerated: a manifest that says how it was
// generated is exactly what that command prints today.
func TestExampleManifestsAreGenerated(t *testing.T) {
	files, _ := filepath.Glob("../examples/*/deploy/knative*.yaml")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var cmdline string
		var body []string
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "# Generated by: kar knative service "); ok {
				cmdline = v
			}
			if !strings.HasPrefix(line, "#") {
				body = append(body, line)
			}
		}
		if cmdline == "" {
			continue
		}
		fs := flag.NewFlagSet("kar knative service", flag.ContinueOnError)
		var a entrypoint.App
		a.Flags(fs)
		ns := fs.String("namespace", "", "")
		if err := fs.Parse(strings.Fields(cmdline)); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		svc, err := Service(context.Background(), a, *ns)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want, err := YAML(svc)
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(body, "\n"); got != string(want) {
			t.Errorf("%s is stale; regenerate it with kar knative service %s\n--- file ---\n%s\n--- generated ---\n%s", f, cmdline, got, want)
		}
	}
}

// TestServiceKEDA: an autoscaled app (-min/-max) gets the HPA class of
// Knative's KEDA extension and a ScaledObject override whose external-push
// trigger names kar-scaler and the target, KEDA's windows from the
// Scaling; a Service of that class without kar-scaler's trigger, or with
// bad bounds, is refused.
func TestServiceKEDA(t *testing.T) {
	ctx := context.Background()
	a := app()
	a.Scale, a.Min, a.Max = 1, 0, 6
	svc, err := ScaledService(ctx, a, "", Scaling{TargetInFlight: 4, Cooldown: 5 * time.Minute, Scaler: "scaler:6000"})
	if err != nil {
		t.Fatal(err)
	}
	ann := svc.Spec.Template.Annotations
	if ann["autoscaling.knative.dev/class"] != "hpa.autoscaling.knative.dev" || ann["autoscaling.knative.dev/min-scale"] != "0" ||
		ann["autoscaling.knative.dev/max-scale"] != "6" || ann["autoscaling.knative.dev/initial-scale"] != "" {
		t.Errorf("annotations %v", ann)
	}
	var so struct {
		Spec struct {
			Min      int64 `json:"minReplicaCount"`
			Max      int64 `json:"maxReplicaCount"`
			Cooldown int64 `json:"cooldownPeriod"`
			Triggers []struct {
				Type     string            `json:"type"`
				Metadata map[string]string `json:"metadata"`
			} `json:"triggers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(ann["autoscaling.knative.dev/scaled-object-override"]), &so); err != nil {
		t.Fatal(err)
	}
	if so.Spec.Min != 0 || so.Spec.Max != 6 || so.Spec.Cooldown != 300 || len(so.Spec.Triggers) != 1 {
		t.Fatalf("override %+v", so)
	}
	tr := so.Spec.Triggers[0]
	want := map[string]string{"scalerAddress": "scaler:6000", "app": "dp", "service": "philosophers", "targetInFlight": "4"}
	if tr.Type != "external-push" || !maps.Equal(tr.Metadata, want) {
		t.Errorf("trigger %+v, want external-push %v", tr, want)
	}

	bad := []struct {
		name string
		edit func(map[string]string)
		want string
	}{
		{"no kar-scaler trigger", func(m map[string]string) {
			m["autoscaling.knative.dev/scaled-object-override"] = `{"spec":{"triggers":[{"type":"cpu"}]}}`
		}, "without kar-scaler's trigger"},
		{"override not JSON", func(m map[string]string) { m["autoscaling.knative.dev/scaled-object-override"] = "x" }, "not a ScaledObject"},
		{"min above max", func(m map[string]string) { m["autoscaling.knative.dev/min-scale"] = "7" }, "min-scale"},
	}
	for _, c := range bad {
		s := svc.DeepCopy()
		c.edit(s.Spec.Template.Annotations)
		if err := Validate(ctx, s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
	// An actor host with no service scales on its first actor type.
	a.Service = ""
	svc, err = Service(ctx, a, "")
	if err != nil || !strings.Contains(svc.Spec.Template.Annotations["autoscaling.knative.dev/scaled-object-override"], `"actorType":"Cafe"`) {
		t.Errorf("actors: %v, %v", err, svc.Spec.Template.Annotations)
	}
}
