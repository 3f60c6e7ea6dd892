package install

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/sidecar/config"
)

// ScalerName is kar-scaler's Deployment and Service, KEDA's external
// scaler over the mesh's load; ScalerPort its gRPC port.
const (
	ScalerName = "kar-scaler"
	ScalerPort = 6000
)

// ScalerAddress is where KEDA calls kar-scaler.
var ScalerAddress = fmt.Sprintf("%s.%s.svc:%d", ScalerName, Namespace, ScalerPort)

// scalerObjects are kar-scaler's Service and Deployment. It reads the
// backend from the runtime config secret, as the sidecars do.
func scalerObjects(o *Options) []Object {
	one := int32(1)
	port := intstr.FromInt32(ScalerPort)
	pod := corev1.PodSpec{
		SecurityContext: podSecurity(o, 65532),
		Containers: []corev1.Container{{
			Name:            ScalerName,
			Image:           o.Image("kar-scaler"),
			ImagePullPolicy: o.PullPolicy,
			Command:         []string{"/kar/bin/kar-scaler"},
			Args:            []string{"-port", strconv.Itoa(ScalerPort)},
			Ports:           []corev1.ContainerPort{{Name: "grpc", ContainerPort: ScalerPort}},
			// kar-scaler serves gRPC's standard health service.
			ReadinessProbe:  &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: ScalerPort}}},
			Resources:       smallRequests(),
			SecurityContext: readOnlySecurity(),
			VolumeMounts:    []corev1.VolumeMount{{Name: "config", MountPath: config.DefaultConfigDir, ReadOnly: true}},
		}},
		Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: RuntimeConfigSecret},
		}}},
	}
	if o.PullSecret() {
		pod.ImagePullSecrets = []corev1.LocalObjectReference{{Name: ImagePullSecret}}
	}
	return []Object{
		service(ScalerName, ScalerName, []corev1.ServicePort{{Name: "grpc", Port: ScalerPort, TargetPort: port}}, false),
		&appsv1.Deployment{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
			ObjectMeta: meta(ScalerName, ScalerName),
			Spec: appsv1.DeploymentSpec{
				Replicas: &one,
				Selector: &metav1.LabelSelector{MatchLabels: selector(ScalerName)},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(ScalerName)}, Spec: pod},
			},
		},
	}
}

// ScaledObjectSpec is what `kar k8s scaledobject` prints.
type ScaledObjectSpec struct {
	autoscale.Flags
	// Name of the ScaledObject (default: the workload's); Namespace of
	// both; Workload: the Deployment (or other scalable kind) scaled.
	Name, Namespace, Workload string
	// APIVersion and Kind of the workload ("": a Deployment).
	APIVersion, Kind string
	// Scaler: where KEDA calls kar-scaler.
	Scaler string
}

// ScaledObject is KEDA's ScaledObject (keda.sh/v1alpha1) for s: an
// external trigger on kar-scaler, KEDA's windows set from the policy
// (cooldownPeriod, the HPA's scale-down stabilisation, pollingInterval).
func ScaledObject(s *ScaledObjectSpec) (map[string]any, error) {
	t, err := s.Flags.Validate()
	if err != nil {
		return nil, err
	}
	if s.Workload == "" && t.Type == "service" {
		s.Workload = t.Name
	}
	if s.Workload == "" {
		return nil, errors.New("-workload is required with -actors: the Deployment to scale")
	}
	name := s.Name
	if name == "" {
		name = s.Workload
	}
	ns := s.Namespace
	if ns == "" {
		ns = "default"
	}
	scaler := s.Scaler
	if scaler == "" {
		scaler = ScalerAddress
	}
	ref := map[string]any{"name": s.Workload}
	if s.Kind != "" {
		ref["kind"] = s.Kind
		ref["apiVersion"] = s.APIVersion
	}
	spec := autoscale.KEDASpec(t, s.Policy, s.Poll, scaler)
	spec["scaleTargetRef"] = ref
	return map[string]any{
		"apiVersion": "keda.sh/v1alpha1",
		"kind":       "ScaledObject",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": map[string]any{
			"kar.ibm.com/app": t.App, ManagedByLabel: "kar"}},
		"spec": spec,
	}, nil
}

// scaledObjectCmd is `kar k8s scaledobject`.
func scaledObjectCmd(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("scaledobject", "")
	var s ScaledObjectSpec
	s.Flags.Register(fs)
	fs.StringVar(&s.Workload, "workload", "", "the Deployment to scale (default: the service's name)")
	fs.StringVar(&s.Name, "name", "", "name of the ScaledObject (default: the workload's)")
	fs.StringVar(&s.Namespace, "namespace", "default", "namespace of the workload and the ScaledObject")
	fs.StringVar(&s.Kind, "kind", "", "kind of the workload when not a Deployment (with -api-version), e.g. StatefulSet")
	fs.StringVar(&s.APIVersion, "api-version", "apps/v1", "API version of -kind")
	fs.StringVar(&s.Scaler, "scaler", ScalerAddress, "host:port where KEDA calls kar-scaler")
	if code, ok := parseFlagsOnly(fs, "scaledobject", args, stdout, stderr); !ok {
		return code
	}
	obj, err := ScaledObject(&s)
	if err != nil {
		fmt.Fprintf(stderr, "kar k8s scaledobject: %v\n", err)
		return 2
	}
	b, err := yaml.Marshal(obj)
	if err != nil {
		fmt.Fprintf(stderr, "kar k8s scaledobject: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "---\n%s", b)
	return 0
}
