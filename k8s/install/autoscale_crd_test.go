package install

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/k8s/kubetest"
	"github.com/kar-runtime/kar/knative"
)

var (
	gvrCRD          = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gvrScaledObject = schema.GroupVersionResource{Group: "keda.sh", Version: "v1alpha1", Resource: "scaledobjects"}
	gvrKnativeSvc   = schema.GroupVersionResource{Group: "serving.knative.dev", Version: "v1", Resource: "services"}
)

// installCRD creates the CRD in file and waits until it is established.
func installCRD(t *testing.T, ctx context.Context, dyn dynamic.Interface, file string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var crd unstructured.Unstructured
	if err := yaml.Unmarshal(b, &crd.Object); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if _, err := dyn.Resource(gvrCRD).Create(ctx, &crd, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create the CRD of %s: %v", file, err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		got, err := dyn.Resource(gvrCRD).Get(ctx, crd.GetName(), metav1.GetOptions{})
		if err != nil {
			return false
		}
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
				return true
			}
		}
		return false
	}, "CRD %s established", crd.GetName())
}

// strictCreate creates obj as kubectl apply does by default: unknown or
// duplicate fields are an error, not dropped.
func strictCreate(ctx context.Context, dyn dynamic.Interface, gvr schema.GroupVersionResource, obj map[string]any) (*unstructured.Unstructured, error) {
	u := &unstructured.Unstructured{Object: obj}
	return dyn.Resource(gvr).Namespace(u.GetNamespace()).Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"})
}

// knativeCRD is Knative Serving's Service CRD as its module ships it
// (knative.dev/serving v0.42.2, config/core/300-resources/service.yaml).
func knativeCRD(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "knative.dev/serving").Output()
	if err != nil {
		t.Fatalf("go list -m knative.dev/serving: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "config", "core", "300-resources", "service.yaml")
}

// apiServer starts etcd and kube-apiserver (skipped with -short) and
// returns a client of it and a context of two minutes.
func apiServer(t *testing.T) (context.Context, *Client) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver")
	}
	cl := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	c, err := NewClient(cl.Kubeconfig, "")
	if err != nil {
		t.Fatal(err)
	}
	return ctx, c
}

// TestAutoscalingObjectsAgainstAPIServer: what `kar k8s scaledobject` and
// `kar knative service -min/-max` print is accepted by a real
// kube-apiserver holding KEDA's ScaledObject CRD and Knative's Service
// CRD, under strict field validation, and stored whole (no field pruned).
// The ScaledObject Knative's KEDA extension would make from the Service's
// override (its name, namespace, scaleTargetRef and max filled in as the
// extension does) is accepted too. The same objects with a misspelt field
// or a wrong type are rejected: the test can fail.
func TestAutoscalingObjectsAgainstAPIServer(t *testing.T) {
	ctx, c := apiServer(t)
	dyn := c.Dynamic
	installCRD(t, ctx, dyn, filepath.Join("testdata", "keda.sh_scaledobjects.yaml"))
	installCRD(t, ctx, dyn, knativeCRD(t))

	// kar k8s scaledobject's output, as printed.
	var out, errb bytes.Buffer
	if code := Main(ctx, []string{"scaledobject", "-app", "shop", "-actors", "Cart", "-workload", "cart", "-kind", "StatefulSet",
		"-min", "1", "-max", "4", "-target", "3", "-cooldown", "5m"}, &out, &errb); code != 0 {
		t.Fatalf("kar k8s scaledobject: exit %d: %s", code, errb.String())
	}
	var so map[string]any
	if err := yaml.Unmarshal(out.Bytes(), &so); err != nil {
		t.Fatal(err)
	}

	// Knative's Service, and the ScaledObject its KEDA extension makes.
	a := entrypoint.App{Component: entrypoint.Component{App: "shop", Service: "orders", Port: 8080}, Name: "orders", Image: "icr.io/shop/orders:1", Min: 0, Max: 5}
	svc, err := knative.Service(ctx, a, "default")
	if err != nil {
		t.Fatal(err)
	}
	b, err := knative.YAML(svc)
	if err != nil {
		t.Fatal(err)
	}
	var ksvc map[string]any
	if err := yaml.Unmarshal(b, &ksvc); err != nil {
		t.Fatal(err)
	}
	var ext map[string]any
	if err := json.Unmarshal([]byte(svc.Spec.Template.Annotations[knative.ScaledObjectOverrideKey]), &ext); err != nil {
		t.Fatal(err)
	}
	ext["apiVersion"], ext["kind"] = "keda.sh/v1alpha1", "ScaledObject"
	ext["metadata"] = map[string]any{"name": "orders-00001", "namespace": "default"}
	spec := ext["spec"].(map[string]any)
	spec["scaleTargetRef"] = map[string]any{"name": "orders-00001-deployment"}
	spec["maxReplicaCount"] = 5.0
	spec["advanced"].(map[string]any)["horizontalPodAutoscalerConfig"].(map[string]any)["name"] = "orders-00001"

	for _, c := range []struct {
		name string
		gvr  schema.GroupVersionResource
		obj  map[string]any
		path []string // the spec, compared once stored
	}{
		{"kar k8s scaledobject", gvrScaledObject, so, []string{"spec"}},
		{"kar knative service -min 0 -max 5", gvrKnativeSvc, ksvc, []string{"spec", "template", "metadata", "annotations"}},
		{"the KEDA extension's ScaledObject", gvrScaledObject, ext, []string{"spec"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A misspelt field and a wrong type are rejected.
			bad := func(edit func(spec map[string]any)) map[string]any {
				var cp map[string]any
				j, _ := json.Marshal(c.obj)
				json.Unmarshal(j, &cp)
				edit(cp["spec"].(map[string]any))
				cp["metadata"].(map[string]any)["name"] = "bad"
				return cp
			}
			for what, obj := range map[string]map[string]any{
				"unknown field": bad(func(s map[string]any) { s["minReplicas"] = 1 }),
				"wrong type": bad(func(s map[string]any) {
					if c.gvr == gvrScaledObject {
						s["cooldownPeriod"] = "five minutes"
					} else {
						s["template"].(map[string]any)["spec"].(map[string]any)["containerConcurrency"] = "none"
					}
				}),
			} {
				if _, err := strictCreate(ctx, dyn, c.gvr, obj); err == nil {
					t.Errorf("%s: accepted, want rejected", what)
				} else {
					t.Logf("%s rejected: %v", what, err)
				}
			}
			got, err := strictCreate(ctx, dyn, c.gvr, c.obj)
			if err != nil {
				t.Fatalf("rejected: %v", err)
			}
			want, _, _ := unstructured.NestedFieldNoCopy(c.obj, c.path...)
			stored, _, _ := unstructured.NestedFieldNoCopy(got.Object, c.path...)
			wj, _ := json.Marshal(want)
			sj, _ := json.Marshal(stored)
			var w, s any
			json.Unmarshal(wj, &w)
			json.Unmarshal(sj, &s)
			if !reflect.DeepEqual(w, s) {
				t.Errorf("stored %s differs (a field pruned?):\n got %s\nwant %s", strings.Join(c.path, "."), sj, wj)
			}
		})
	}
}
