// Package knative builds the Knative Service of a sidecar-in-container kar
// component from knative.dev/serving types (v0.42.2 = Knative 1.15, what
// IBM Code Engine runs) and checks it with Knative's own validation.
//
// kar components are reached through Kafka, which Knative's autoscaler
// cannot see, so a Service has a fixed scale (min-scale = max-scale =
// initial-scale), or it is scaled through KEDA on the mesh's load: the HPA
// class of Knative's KEDA extension (knative-extensions/autoscaler-keda),
// whose ScaledObject comes from the revision's scaled-object-override
// annotation with kar-scaler's trigger.
package knative

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"knative.dev/networking/pkg/apis/networking"
	"knative.dev/pkg/apis"
	"knative.dev/pkg/ptr"
	"knative.dev/serving/pkg/apis/autoscaling"
	"knative.dev/serving/pkg/apis/serving"
	servingv1 "knative.dev/serving/pkg/apis/serving/v1"
	"sigs.k8s.io/yaml"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/entrypoint"
)

// The annotations of Knative's KEDA extension: the HPA class hands the
// revision's scaling to it, and it creates the revision's ScaledObject
// from the override (its name, namespace, scaleTargetRef and
// maxReplicaCount filled in from the revision).
const (
	HPAClass                = autoscaling.HPA
	ScaledObjectOverrideKey = autoscaling.GroupName + "/scaled-object-override"
	DefaultScalerAddress    = "kar-scaler.kar-system.svc:6000"
)

// Scaling is how an autoscaled Service (entrypoint.App.Autoscaled) scales
// on the mesh's load; its zero value is the defaults. Min and Max come
// from the App.
type Scaling struct {
	// TargetInFlight per replica, ScaleDownWindow and Cooldown as in
	// autoscale.Policy (0: the defaults).
	TargetInFlight            int64
	ScaleDownWindow, Cooldown time.Duration
	// Poll: KEDA's pollingInterval; Scaler: kar-scaler's address.
	Poll   time.Duration
	Scaler string
}

// policy is s with app's bounds and the defaults filled in.
func (s Scaling) policy(app entrypoint.App) (autoscale.Policy, time.Duration, string) {
	p := autoscale.DefaultPolicy(app.Min, app.Max, autoscale.DefaultTargetInFlight)
	if s.TargetInFlight != 0 {
		p.TargetInFlight = s.TargetInFlight
	}
	if s.ScaleDownWindow != 0 {
		p.ScaleDownWindow = s.ScaleDownWindow
	}
	if s.Cooldown != 0 {
		p.Cooldown = s.Cooldown
	}
	poll, scaler := s.Poll, s.Scaler
	if poll == 0 {
		poll = autoscale.DefaultPoll
	}
	if scaler == "" {
		scaler = DefaultScalerAddress
	}
	return p, poll, scaler
}

// scalingAnnotations are the revision's annotations: a fixed scale, or
// the KEDA extension's class and kar-scaler's ScaledObject.
func scalingAnnotations(app entrypoint.App, sc Scaling) (map[string]string, error) {
	if !app.Autoscaled() {
		scale := app.ScaleString()
		return map[string]string{
			autoscaling.MinScaleAnnotationKey:     scale,
			autoscaling.MaxScaleAnnotationKey:     scale,
			autoscaling.InitialScaleAnnotationKey: scale,
		}, nil
	}
	p, poll, scaler := sc.policy(app)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	t := autoscale.Target{App: app.App, Type: "service", Name: app.Service}
	if app.Service == "" && len(app.Actors) > 0 {
		t.Type, t.Name = "actor", app.Actors[0]
	}
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("an autoscaled service scales on its -service or first -actors type: %w", err)
	}
	override, err := json.Marshal(map[string]any{"spec": autoscale.KEDASpec(t, p, poll, scaler)})
	if err != nil {
		return nil, err
	}
	// No initial-scale: Knative starts a revision with one replica (0
	// needs the cluster's allow-zero-initial-scale), and KEDA takes it to
	// zero after the cooldown when no work comes.
	return map[string]string{
		autoscaling.ClassAnnotationKey:    HPAClass,
		autoscaling.MinScaleAnnotationKey: strconv.Itoa(app.Min),
		autoscaling.MaxScaleAnnotationKey: strconv.Itoa(app.Max),
		ScaledObjectOverrideKey:           string(override),
	}, nil
}

// Port names Knative gives meaning to: HTTP/1.1, or HTTP/2 with prior knowledge.
const (
	PortHTTP1 = "http1"
	PortH2C   = "h2c"
)

// Service builds the Knative Service for app, in namespace ns (empty: the
// current namespace of whoever applies it), and validates it; an
// autoscaled app gets the default Scaling.
func Service(ctx context.Context, app entrypoint.App, ns string) (*servingv1.Service, error) {
	return ScaledService(ctx, app, ns, Scaling{})
}

// ScaledService is Service with the scaling of an autoscaled app.
func ScaledService(ctx context.Context, app entrypoint.App, ns string, sc Scaling) (*servingv1.Service, error) {
	if err := app.Validate(); err != nil {
		return nil, err
	}
	ann, err := scalingAnnotations(app, sc)
	if err != nil {
		return nil, err
	}
	portName := PortHTTP1
	if app.H2C {
		portName = PortH2C
	}
	var env []corev1.EnvVar
	for _, v := range app.AllEnv() {
		env = append(env, corev1.EnvVar{Name: v.Name, Value: v.Value})
	}
	svc := &servingv1.Service{
		TypeMeta: metav1.TypeMeta{APIVersion: servingv1.SchemeGroupVersion.String(), Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{
			Name:      app.Name,
			Namespace: ns,
			Labels:    map[string]string{"kar.ibm.com/app": app.App},
		},
		Spec: servingv1.ServiceSpec{
			ConfigurationSpec: servingv1.ConfigurationSpec{
				Template: servingv1.RevisionTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Annotations: ann},
					Spec: servingv1.RevisionSpec{
						// The sidecar, not Knative, bounds concurrency.
						ContainerConcurrency: ptr.Int64(0),
						PodSpec: corev1.PodSpec{
							Containers: []corev1.Container{{
								Image: app.Image,
								Ports: []corev1.ContainerPort{{
									Name:          portName,
									ContainerPort: int32(app.PortOrDefault()),
									Protocol:      corev1.ProtocolTCP,
								}},
								Env: env,
								// The kar base images run as a non-root user; say so,
								// as Knative recommends.
								SecurityContext: &corev1.SecurityContext{
									AllowPrivilegeEscalation: ptr.Bool(false),
									RunAsNonRoot:             ptr.Bool(true),
									Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
									SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
								},
								EnvFrom: []corev1.EnvFromSource{{
									SecretRef: &corev1.SecretEnvSource{
										LocalObjectReference: corev1.LocalObjectReference{Name: entrypoint.RuntimeConfigSecret},
									},
								}},
							}},
						},
					},
				},
			},
		},
	}
	if !app.Externalize {
		svc.Labels[networking.VisibilityLabelKey] = serving.VisibilityClusterLocal
	}
	if app.RegistrySecret != "" {
		svc.Spec.Template.Spec.ImagePullSecrets = []corev1.LocalObjectReference{{Name: app.RegistrySecret}}
	}
	if err := Validate(ctx, svc); err != nil {
		return nil, err
	}
	return svc, nil
}

// Validate runs Knative's admission checks (defaulting, then validation,
// as the webhook does) on a copy of svc, and kar's own rule: a fixed
// scale, or KEDA's class with a ScaledObject override that scales on
// kar-scaler between min-scale and max-scale.
func Validate(ctx context.Context, svc *servingv1.Service) error {
	c := svc.DeepCopy()
	ctx = apis.WithinCreate(ctx)
	c.SetDefaults(ctx)
	// Warnings (such as Knative's advice on security contexts in
	// hand-written manifests) do not make a Service invalid.
	if ferr := c.Validate(ctx).Filter(apis.ErrorLevel); ferr != nil {
		return fmt.Errorf("the Knative Service %q is invalid: %w", svc.Name, ferr)
	}
	ann := c.Spec.Template.Annotations
	minS, maxS := ann[autoscaling.MinScaleAnnotationKey], ann[autoscaling.MaxScaleAnnotationKey]
	if ann[autoscaling.ClassAnnotationKey] == HPAClass {
		return validateKEDA(svc.Name, ann)
	}
	if n, err := strconv.Atoi(minS); err != nil || n < 1 || minS != maxS {
		return fmt.Errorf("the Knative Service %q does not have a fixed scale (min-scale %q, max-scale %q): kar components need min-scale = max-scale >= 1", svc.Name, minS, maxS)
	}
	return nil
}

// validateKEDA checks the scaling of a Service autoscaled through KEDA.
func validateKEDA(name string, ann map[string]string) error {
	minS, maxS := ann[autoscaling.MinScaleAnnotationKey], ann[autoscaling.MaxScaleAnnotationKey]
	lo, err1 := strconv.Atoi(minS)
	hi, err2 := strconv.Atoi(maxS)
	if err1 != nil || err2 != nil || lo < 0 || hi < 1 || lo > hi {
		return fmt.Errorf("the Knative Service %q scales through KEDA with min-scale %q, max-scale %q: want 0 <= min-scale <= max-scale, max-scale >= 1", name, minS, maxS)
	}
	var so struct {
		Spec struct {
			Triggers []struct {
				Type     string            `json:"type"`
				Metadata map[string]string `json:"metadata"`
			} `json:"triggers"`
		} `json:"spec"`
	}
	if err := json.Unmarshal([]byte(ann[ScaledObjectOverrideKey]), &so); err != nil {
		return fmt.Errorf("the Knative Service %q scales through KEDA but its %s is not a ScaledObject: %w", name, ScaledObjectOverrideKey, err)
	}
	for _, t := range so.Spec.Triggers {
		if t.Type == "external-push" && t.Metadata["scalerAddress"] != "" && t.Metadata[autoscale.MetaApp] != "" {
			return nil
		}
	}
	return fmt.Errorf("the Knative Service %q scales through KEDA without kar-scaler's trigger in its %s: the mesh's load would not reach it", name, ScaledObjectOverrideKey)
}

// YAML renders svc as a manifest for kubectl apply, without the empty
// status and creation timestamp the Go types carry.
func YAML(svc *servingv1.Service) ([]byte, error) {
	b, err := yaml.Marshal(svc)
	if err != nil {
		return nil, fmt.Errorf("cannot render the Knative Service: %w", err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("cannot render the Knative Service: %w", err)
	}
	delete(m, "status")
	prune(m)
	return yaml.Marshal(m)
}

// prune drops null, empty-string and empty-object members (creationTimestamp: null,
// resources: {}), which only add noise to a manifest.
func prune(m map[string]any) {
	for k, v := range m {
		switch t := v.(type) {
		case nil:
			delete(m, k)
		case string:
			if t == "" { // e.g. the container name, which Knative defaults
				delete(m, k)
			}
		case map[string]any:
			prune(t)
			if len(t) == 0 {
				delete(m, k)
			}
		case []any:
			for _, e := range t {
				if em, ok := e.(map[string]any); ok {
					prune(em)
				}
			}
		}
	}
}

// Parse reads a manifest back into a Service (for tests and checks of
// hand-written manifests).
func Parse(b []byte) (*servingv1.Service, error) {
	var svc servingv1.Service
	if err := yaml.UnmarshalStrict(b, &svc); err != nil {
		return nil, fmt.Errorf("not a Knative Service manifest: %w", err)
	}
	if svc.APIVersion != servingv1.SchemeGroupVersion.String() || svc.Kind != "Service" {
		return nil, fmt.Errorf("not a Knative Service manifest: apiVersion %q kind %q, want serving.knative.dev/v1 Service", svc.APIVersion, svc.Kind)
	}
	return &svc, nil
}
