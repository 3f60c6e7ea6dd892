package install

import (
	"bytes"
	"context"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestScaledObject: `kar k8s scaledobject` prints one KEDA ScaledObject
// whose external trigger names kar-scaler and the target, with KEDA's
// windows taken from the policy flags; bad flags are exit 2 with the
// reason.
func TestScaledObject(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		code  int
		want  string // in the output (exit 0) or the error (exit 2)
		check func(t *testing.T, spec map[string]any)
	}{
		{"service, defaults", []string{"-app", "shop", "-service", "orders", "-max", "8"}, 0, "kind: ScaledObject", func(t *testing.T, spec map[string]any) {
			want := map[string]any{"minReplicaCount": 0.0, "maxReplicaCount": 8.0, "pollingInterval": 1.0, "cooldownPeriod": 60.0}
			for k, v := range want {
				if spec[k] != v {
					t.Errorf("%s: %v, want %v", k, spec[k], v)
				}
			}
			if ref := spec["scaleTargetRef"].(map[string]any); ref["name"] != "orders" || len(ref) != 1 {
				t.Errorf("scaleTargetRef: %v", ref)
			}
			trig := spec["triggers"].([]any)[0].(map[string]any)
			md := trig["metadata"].(map[string]any)
			if trig["type"] != "external-push" || md["scalerAddress"] != "kar-scaler.kar-system.svc:6000" || md["app"] != "shop" ||
				md["service"] != "orders" || md["targetInFlight"] != "10" || len(md) != 4 {
				t.Errorf("trigger: %v", trig)
			}
			sd := spec["advanced"].(map[string]any)["horizontalPodAutoscalerConfig"].(map[string]any)["behavior"].(map[string]any)["scaleDown"].(map[string]any)
			if sd["stabilizationWindowSeconds"] != 30.0 {
				t.Errorf("scale-down window: %v", sd)
			}
		}},
		{"actors, knobs", []string{"-app", "shop", "-actors", "Cart", "-workload", "cart", "-kind", "StatefulSet", "-min", "1", "-max", "4",
			"-target", "3", "-poll", "2s", "-cooldown", "5m", "-scale_down_window", "10s", "-namespace", "apps", "-name", "cart-scaler"}, 0, "name: cart-scaler", func(t *testing.T, spec map[string]any) {
			if spec["minReplicaCount"] != 1.0 || spec["pollingInterval"] != 2.0 || spec["cooldownPeriod"] != 300.0 {
				t.Errorf("spec: %v", spec)
			}
			if ref := spec["scaleTargetRef"].(map[string]any); ref["name"] != "cart" || ref["kind"] != "StatefulSet" || ref["apiVersion"] != "apps/v1" {
				t.Errorf("scaleTargetRef: %v", ref)
			}
			md := spec["triggers"].([]any)[0].(map[string]any)["metadata"].(map[string]any)
			if md["actorType"] != "Cart" || md["targetInFlight"] != "3" || md["service"] != nil {
				t.Errorf("metadata: %v", md)
			}
		}},
		{"actors need a workload", []string{"-app", "shop", "-actors", "Cart"}, 2, "-workload is required", nil},
		{"no target", []string{"-app", "shop"}, 2, "-service S or -actors T", nil},
		{"max below min", []string{"-app", "shop", "-service", "s", "-min", "3", "-max", "2"}, 2, "max 2", nil},
		{"stray argument", []string{"-app", "shop", "-service", "s", "extra"}, 2, "unexpected argument", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Main(context.Background(), append([]string{"scaledobject"}, c.args...), &out, &errb)
			if code != c.code {
				t.Fatalf("exit %d, want %d: %s", code, c.code, errb.String())
			}
			if c.code != 0 {
				if !strings.Contains(errb.String(), c.want) {
					t.Errorf("stderr %q, want %q", errb.String(), c.want)
				}
				return
			}
			if !strings.Contains(out.String(), c.want) {
				t.Errorf("no %q in\n%s", c.want, out.String())
			}
			var obj map[string]any
			if err := yaml.Unmarshal(out.Bytes(), &obj); err != nil {
				t.Fatalf("does not parse: %v\n%s", err, out.String())
			}
			if obj["apiVersion"] != "keda.sh/v1alpha1" || obj["kind"] != "ScaledObject" {
				t.Errorf("object: %v", obj)
			}
			c.check(t, obj["spec"].(map[string]any))
		})
	}
}

// TestScalerObjects: the install runs kar-scaler from its own image with
// the runtime config secret as its config directory, behind a Service on
// the port ScaledObjects name.
func TestScalerObjects(t *testing.T) {
	o := &Options{Registry: "reg.example/kar", RegistryUser: "u", RegistryPassword: "p"}
	objs := scalerObjects(o)
	dep := find[*appsv1.Deployment](objs, ScalerName)
	svc := find[*corev1.Service](objs, ScalerName)
	if dep == nil || svc == nil {
		t.Fatalf("objects: %v", objs)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	if c.Image != "reg.example/kar/kar-scaler:latest" || c.Command[0] != "/kar/bin/kar-scaler" || c.ReadinessProbe.GRPC == nil ||
		c.VolumeMounts[0].MountPath != "/var/run/secrets/kar.ibm.com" {
		t.Errorf("container: %+v", c)
	}
	if v := dep.Spec.Template.Spec.Volumes[0]; v.Secret == nil || v.Secret.SecretName != RuntimeConfigSecret {
		t.Errorf("volume: %+v", v)
	}
	if len(dep.Spec.Template.Spec.ImagePullSecrets) != 1 {
		t.Error("no image-pull secret")
	}
	if svc.Spec.Ports[0].Port != ScalerPort || svc.Namespace != Namespace || !strings.HasPrefix(ScalerAddress, svc.Name+"."+svc.Namespace+".svc:") {
		t.Errorf("service: %+v, address %s", svc.Spec, ScalerAddress)
	}
}
