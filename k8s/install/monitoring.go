package install

import (
	_ "embed"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/kar-runtime/kar/k8s/injector"
)

//go:embed dashboards/kar.json
var dashboard string

// Dashboard is the Grafana dashboard of a kar mesh (dashboards/kar.json),
// over the metrics the sidecars serve.
func Dashboard() string { return dashboard }

// Names of the monitoring objects of `kar k8s manifests -monitoring`.
const (
	PodMonitorName       = "kar-sidecars"
	DashboardConfigMap   = "kar-grafana-dashboard"
	GrafanaDashboardFile = "kar.json"
)

// monitoringObjects are a PodMonitor of the Prometheus Operator, which
// scrapes the metrics port of every injected sidecar in every namespace,
// and the Grafana dashboard in a ConfigMap labelled for Grafana's
// dashboard sidecar (grafana_dashboard=1, as the kube-prometheus-stack
// chart looks for). A PodMonitor rather than a ServiceMonitor: kar's
// components need no Service (an actor host has none), and a
// ServiceMonitor only finds Pods through one.
func monitoringObjects() []Object {
	pm := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "PodMonitor",
		"metadata": map[string]any{
			"name": PodMonitorName, "namespace": Namespace, "labels": toAny(labels("kar")),
		},
		"spec": map[string]any{
			"namespaceSelector": map[string]any{"any": true},
			"selector": map[string]any{"matchExpressions": []any{
				map[string]any{"key": injector.AnnotationApp, "operator": "Exists"},
			}},
			"podMetricsEndpoints": []any{map[string]any{
				"port": injector.MetricsPortName, "path": "/metrics", "interval": "15s",
			}},
		},
	}}
	lb := labels("kar")
	lb["grafana_dashboard"] = "1"
	cm := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: DashboardConfigMap, Namespace: Namespace, Labels: lb},
		Data:       map[string]string{GrafanaDashboardFile: dashboard},
	}
	return []Object{pm, cm}
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
