package install

import (
	"context"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Manifests writes the install as multi-document YAML for GitOps: the same
// objects deploy applies, plus the enablement of the default namespace. The
// Redis password and the injector certificate are generated afresh.
func Manifests(ctx context.Context, o *Options, out io.Writer) error {
	if err := o.Validate(); err != nil {
		return err
	}
	g, err := Generate(ctx, nil, o, time.Now())
	if err != nil {
		return err
	}
	objs, err := Objects(o, g)
	if err != nil {
		return err
	}
	objs = append(objs, enabledNamespaceObjects("default", objs)...)
	if o.Monitoring {
		objs = append(objs, monitoringObjects()...)
	}
	for _, obj := range objs {
		u, err := toUnstructured(obj)
		if err != nil {
			return err
		}
		b, err := yaml.Marshal(u.Object)
		if err != nil {
			return fmt.Errorf("printing %s: %w", obj.GetName(), err)
		}
		if _, err := fmt.Fprintf(out, "---\n%s", b); err != nil {
			return err
		}
	}
	return nil
}

// enabledNamespaceObjects is what EnableNamespace makes, as objects.
func enabledNamespaceObjects(ns string, install []Object) []Object {
	out := []Object{&corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{EnabledLabel: "true"}},
	}}
	for _, obj := range install {
		s, ok := obj.(*corev1.Secret)
		if !ok || s.Namespace != Namespace || (s.Name != RuntimeConfigSecret && s.Name != ImagePullSecret) {
			continue
		}
		cp := secret(metav1.ObjectMeta{Name: s.Name, Namespace: ns, Labels: labels("kar")}, nil, s.Type)
		cp.Data = s.Data
		out = append(out, cp)
	}
	return out
}
