package install

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kar-runtime/kar/k8s/certs"
)

// FieldManager names kar in the objects' managedFields.
const FieldManager = "kar"

// Client talks to the cluster of a kubeconfig context.
type Client struct {
	Typed   kubernetes.Interface
	Dynamic dynamic.Interface
}

// NewClient loads a kubeconfig the way kubectl does: path (or $KUBECONFIG,
// or ~/.kube/config) and context (or its current context).
func NewClient(kubeconfig, context string) (*Client, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("no usable cluster in the kubeconfig (set -kubeconfig, $KUBECONFIG or -context): %w", err)
	}
	cfg.UserAgent = "kar"
	cfg.Timeout = 30 * time.Second
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return &Client{Typed: typed, Dynamic: dyn}, nil
}

// known lists every object an install may hold but its namespace: undeploy
// deletes these, deploy prunes those its current options no longer make.
var known = []struct {
	gvr  schema.GroupVersionResource
	ns   string
	name string
}{
	{gvrWebhook, "", WebhookName},
	{gvrDeployment, Namespace, InjectorName},
	{gvrService, Namespace, InjectorName},
	{gvrSecret, Namespace, InjectorTLSSecret},
	{gvrDeployment, Namespace, ScalerName},
	{gvrService, Namespace, ScalerName},
	{gvrStatefulSet, Namespace, KafkaName},
	{gvrService, Namespace, KafkaName},
	{gvrService, Namespace, KafkaName + "-external"},
	{gvrStatefulSet, Namespace, RedisName},
	{gvrService, Namespace, RedisName},
	{gvrService, Namespace, RedisName + "-external"},
	{gvrSecret, Namespace, RedisConfigSecret},
	{gvrSecret, Namespace, ImagePullSecret},
	{gvrSecret, Namespace, RuntimeConfigSecret},
}

var (
	gvrNamespace   = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrSecret      = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	gvrService     = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrStatefulSet = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	gvrDeployment  = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrWebhook     = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "mutatingwebhookconfigurations"}
)

func gvrOf(obj Object) (schema.GroupVersionResource, error) {
	switch gvk := obj.GetObjectKind().GroupVersionKind(); gvk.Kind {
	case "Namespace":
		return gvrNamespace, nil
	case "Secret":
		return gvrSecret, nil
	case "Service":
		return gvrService, nil
	case "StatefulSet":
		return gvrStatefulSet, nil
	case "Deployment":
		return gvrDeployment, nil
	case "MutatingWebhookConfiguration":
		return gvrWebhook, nil
	default:
		return schema.GroupVersionResource{}, fmt.Errorf("internal error: no resource for kind %s", gvk.Kind)
	}
}

// toUnstructured converts a typed object, leaving out the empty status and
// null timestamps that mean nothing in a desired state.
func toUnstructured(obj Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, fmt.Errorf("converting %s/%s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
	}
	clean(m)
	return &unstructured.Unstructured{Object: m}, nil
}

func clean(m map[string]any) {
	for k, v := range m {
		switch vv := v.(type) {
		case nil:
			if k == "creationTimestamp" {
				delete(m, k)
			}
		case map[string]any:
			// A desired state has no status, at any depth (PVC templates).
			if k == "status" {
				delete(m, k)
				continue
			}
			clean(vv)
		case []any:
			for _, e := range vv {
				if em, ok := e.(map[string]any); ok {
					clean(em)
				}
			}
		}
	}
}

// apply creates or updates obj by server-side apply, so re-running deploy
// converges and fields set by others (a Service's clusterIP) stay.
func (c *Client) apply(ctx context.Context, obj Object) error {
	gvr, err := gvrOf(obj)
	if err != nil {
		return err
	}
	u, err := toUnstructured(obj)
	if err != nil {
		return err
	}
	var ri dynamic.ResourceInterface = c.Dynamic.Resource(gvr)
	if ns := obj.GetNamespace(); ns != "" {
		ri = c.Dynamic.Resource(gvr).Namespace(ns)
	}
	if _, err := ri.Apply(ctx, obj.GetName(), u, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("applying %s %s: %w", strings.ToLower(u.GetKind()), qualified(obj.GetNamespace(), obj.GetName()), err)
	}
	return nil
}

func qualified(ns, name string) string {
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

// deleteOwned deletes an object if it exists, carries kar's label (a
// same-named object kar did not make is left alone) and is not already
// being deleted, and reports whether it did.
func (c *Client) deleteOwned(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (bool, error) {
	var ri dynamic.ResourceInterface = c.Dynamic.Resource(gvr)
	if ns != "" {
		ri = c.Dynamic.Resource(gvr).Namespace(ns)
	}
	u, err := ri.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s %s: %w", gvr.Resource, qualified(ns, name), err)
	}
	if u.GetLabels()[PartOfLabel] != "kar" || u.GetDeletionTimestamp() != nil {
		return false, nil
	}
	uid := u.GetUID()
	err = ri.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) {
		return false, fmt.Errorf("deleting %s %s: %w", gvr.Resource, qualified(ns, name), err)
	}
	return err == nil, nil
}

// Generate makes the install's secrets: the injector certificate always
// (that is the rotation), the Redis password only when the cluster has none
// yet (c nil: manifests, always new).
func Generate(ctx context.Context, c *Client, o *Options, now time.Time) (*Generated, error) {
	g := &Generated{}
	var err error
	if g.TLS, err = certs.New(now, injectorHosts(o)...); err != nil {
		return nil, err
	}
	g.CABundle = g.TLS.CACert
	if o.ManagedCredentials != "" {
		if g.Managed, err = ManagedConfig(ctx, o.ManagedCredentials); err != nil {
			return nil, err
		}
	}
	if c != nil {
		if s, err := c.Typed.CoreV1().Secrets(Namespace).Get(ctx, InjectorTLSSecret, metav1.GetOptions{}); err == nil {
			g.CABundle = certs.Bundle(now, g.TLS.CACert, s.Data["ca.crt"])
		} else if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("reading the injector certificate: %w", err)
		}
		if o.ManagedCredentials == "" {
			// Keep the password: the Redis data on the volume and running
			// Pods use it.
			if s, err := c.Typed.CoreV1().Secrets(Namespace).Get(ctx, RuntimeConfigSecret, metav1.GetOptions{}); err == nil &&
				string(s.Data["redis_user"]) == RedisUser && len(s.Data["redis_password"]) > 0 {
				g.RedisPassword = string(s.Data["redis_password"])
			} else if err != nil && !apierrors.IsNotFound(err) {
				return nil, fmt.Errorf("reading the runtime config: %w", err)
			}
		}
	}
	if o.ManagedCredentials == "" && g.RedisPassword == "" {
		b := make([]byte, 24)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		g.RedisPassword = hex.EncodeToString(b)
	}
	return g, nil
}

// Deploy installs or updates kar in the cluster and enables the default
// namespace (and refreshes the secrets of every enabled namespace).
func Deploy(ctx context.Context, c *Client, o *Options, out io.Writer) error {
	if err := o.Validate(); err != nil {
		return err
	}
	if ns, err := c.Typed.CoreV1().Namespaces().Get(ctx, Namespace, metav1.GetOptions{}); err == nil && ns.DeletionTimestamp != nil {
		return fmt.Errorf("namespace %s is still being deleted (an earlier undeploy): deploy again once `kubectl get namespace %s` finds nothing", Namespace, Namespace)
	} else if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading namespace %s: %w", Namespace, err)
	}
	g, err := Generate(ctx, c, o, time.Now())
	if err != nil {
		return err
	}
	objs, err := Objects(o, g)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, obj := range objs {
		if err := c.apply(ctx, obj); err != nil {
			return err
		}
		gvr, _ := gvrOf(obj)
		want[gvr.Resource+"/"+qualified(obj.GetNamespace(), obj.GetName())] = true
		fmt.Fprintf(out, "%s %s applied\n", strings.ToLower(obj.GetObjectKind().GroupVersionKind().Kind), qualified(obj.GetNamespace(), obj.GetName()))
	}
	// Objects of an earlier deploy with other options (say, in-cluster
	// Redis before -m) go.
	for _, k := range known {
		if want[k.gvr.Resource+"/"+qualified(k.ns, k.name)] {
			continue
		}
		deleted, err := c.deleteOwned(ctx, k.gvr, k.ns, k.name)
		if err != nil {
			return err
		}
		if deleted {
			fmt.Fprintf(out, "%s %s deleted (not part of this install)\n", k.gvr.Resource, qualified(k.ns, k.name))
		}
	}
	enabled, err := c.enabledNamespaces(ctx)
	if err != nil {
		return err
	}
	if !contains(enabled, "default") {
		enabled = append(enabled, "default")
	}
	for _, ns := range enabled {
		if err := EnableNamespace(ctx, c, ns, out); err != nil {
			return err
		}
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, e := range s {
		if e == v {
			return true
		}
	}
	return false
}

func (c *Client) enabledNamespaces(ctx context.Context) ([]string, error) {
	l, err := c.Typed.CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: EnabledLabel + "=true"})
	if err != nil {
		return nil, fmt.Errorf("listing enabled namespaces: %w", err)
	}
	var out []string
	for _, ns := range l.Items {
		out = append(out, ns.Name)
	}
	return out, nil
}

// Undeploy removes everything deploy and namespace enable made, and
// nothing else: namespaces enabled for kar stay, without kar's label and
// secrets. kar-system itself is deleted, with the Redis and Kafka volumes.
func Undeploy(ctx context.Context, c *Client, out io.Writer) error {
	// The webhook first, so no Pod creation waits on an injector that is going away.
	for _, k := range known {
		if k.gvr != gvrWebhook {
			continue
		}
		if deleted, err := c.deleteOwned(ctx, k.gvr, k.ns, k.name); err != nil {
			return err
		} else if deleted {
			fmt.Fprintf(out, "mutatingwebhookconfiguration %s deleted\n", k.name)
		}
	}
	enabled, err := c.enabledNamespaces(ctx)
	if err != nil {
		return err
	}
	for _, ns := range enabled {
		if err := DisableNamespace(ctx, c, ns, out); err != nil {
			return err
		}
	}
	for _, k := range known {
		if k.gvr == gvrWebhook {
			continue
		}
		if deleted, err := c.deleteOwned(ctx, k.gvr, k.ns, k.name); err != nil {
			return err
		} else if deleted {
			fmt.Fprintf(out, "%s %s deleted\n", k.gvr.Resource, qualified(k.ns, k.name))
		}
	}
	pvcs := c.Typed.CoreV1().PersistentVolumeClaims(Namespace)
	if err := pvcs.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: PartOfLabel + "=kar"}); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the Redis and Kafka volumes: %w", err)
	}
	if deleted, err := c.deleteOwned(ctx, gvrNamespace, "", Namespace); err != nil {
		return err
	} else if deleted {
		fmt.Fprintf(out, "namespace %s deleted\n", Namespace)
	}
	return nil
}

func checkUserNamespace(ns string) error {
	if ns == "" {
		return fmt.Errorf("missing namespace: give the namespace to enable or disable")
	}
	if ns == Namespace || strings.HasPrefix(ns, "kube-") {
		return fmt.Errorf("namespace %s is kar's or Kubernetes' own: kar never injects there", ns)
	}
	return nil
}

// EnableNamespace makes ns a home for kar Pods: it creates ns if needed,
// copies the runtime-config (and image-pull) secret into it and labels it
// kar.ibm.com/enabled=true.
func EnableNamespace(ctx context.Context, c *Client, ns string, out io.Writer) error {
	if err := checkUserNamespace(ns); err != nil {
		return err
	}
	core := c.Typed.CoreV1()
	rc, err := core.Secrets(Namespace).Get(ctx, RuntimeConfigSecret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("kar is not deployed in this cluster (no secret %s in %s): run `kar k8s deploy` first", RuntimeConfigSecret, Namespace)
	}
	if err != nil {
		return fmt.Errorf("reading %s: %w", RuntimeConfigSecret, err)
	}
	copies := []*corev1.Secret{rc}
	if ps, err := core.Secrets(Namespace).Get(ctx, ImagePullSecret, metav1.GetOptions{}); err == nil {
		copies = append(copies, ps)
	} else if !apierrors.IsNotFound(err) {
		return fmt.Errorf("reading %s: %w", ImagePullSecret, err)
	}

	if _, err := core.Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		_, err = core.Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
		fmt.Fprintf(out, "namespace %s created\n", ns)
	} else if err != nil {
		return fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	for _, s := range copies {
		cp := secret(metav1.ObjectMeta{Name: s.Name, Namespace: ns, Labels: labels("kar")}, nil, s.Type)
		cp.Data = s.Data
		if err := c.apply(ctx, cp); err != nil {
			return err
		}
	}
	if err := labelNamespace(ctx, c, ns, "true"); err != nil {
		return err
	}
	fmt.Fprintf(out, "namespace %s enabled for kar\n", ns)
	return nil
}

// DisableNamespace undoes EnableNamespace: the label and the copied
// secrets go; the namespace itself and its workloads stay.
func DisableNamespace(ctx context.Context, c *Client, ns string, out io.Writer) error {
	if err := checkUserNamespace(ns); err != nil {
		return err
	}
	core := c.Typed.CoreV1()
	if _, err := core.Namespaces().Get(ctx, ns, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		fmt.Fprintf(out, "namespace %s does not exist: nothing to disable\n", ns)
		return nil
	} else if err != nil {
		return fmt.Errorf("reading namespace %s: %w", ns, err)
	}
	if err := labelNamespace(ctx, c, ns, ""); err != nil {
		return err
	}
	for _, name := range []string{RuntimeConfigSecret, ImagePullSecret} {
		if _, err := c.deleteOwned(ctx, gvrSecret, ns, name); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "namespace %s disabled for kar\n", ns)
	return nil
}

// labelNamespace sets (value "true") or removes (value "") the enabled label.
func labelNamespace(ctx context.Context, c *Client, ns, value string) error {
	var v any
	if value != "" {
		v = value
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": map[string]any{EnabledLabel: v}}})
	if err != nil {
		return err
	}
	if _, err := c.Typed.CoreV1().Namespaces().Patch(ctx, ns, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("labelling namespace %s: %w", ns, err)
	}
	return nil
}
