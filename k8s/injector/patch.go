package injector

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Options are the injector's own settings (flags of kar-injector).
type Options struct {
	// SidecarImage is the image of the injected kar container (sidecar mode).
	SidecarImage string
	// ImagePullSecret, when set, is added to Pods that get a sidecar
	// container, for a sidecar image in a private registry.
	ImagePullSecret string
	// PullPolicy of the sidecar container ("" leaves Kubernetes' default).
	PullPolicy corev1.PullPolicy
}

// Op is one RFC 6902 JSON patch operation.
type Op struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value,omitempty"`
}

// Patch computes the operations that give pod what its annotations ask for.
// Every operation targets one list element or one absent list, never a
// whole spec, so fields this injector's k8s.io/api version does not know
// survive. Applying the result to a Pod and calling Patch again yields no
// operations: the injector is idempotent.
func Patch(pod *corev1.Pod, a *Annotations, opt Options) []Op {
	// Both modes: the component learns its app and both ports, as kar
	// run tells a component it launches.
	env := []corev1.EnvVar{
		{Name: "KAR_APP", Value: a.App},
		{Name: "KAR_APP_PORT", Value: strconv.Itoa(a.AppPort)},
		{Name: "KAR_RUNTIME_PORT", Value: strconv.Itoa(a.RuntimePort)},
	}
	if !a.SidecarContainer {
		// In-container mode: the app container holds kar. With
		// KAR_SIDECAR_IN_CONTAINER the kar base images' entrypoint (`kar
		// entrypoint -- CMD`) runs the command under `kar run`, configured
		// by this env and the mounted config directory.
		env = append([]corev1.EnvVar{{Name: "KAR_SIDECAR_IN_CONTAINER", Value: "true"}}, env...)
		env = append(env, corev1.EnvVar{Name: "KAR_EXTRA_ARGS", Value: strings.Join(a.RunFlags(), " ")})
	}
	ops := labelOps(pod.Labels, a.Labels())
	ops = append(ops, scrapeOps(pod.Annotations, a.Metrics())...)
	for i := range pod.Spec.Containers {
		c := &pod.Spec.Containers[i]
		if c.Name == SidecarContainerName && a.SidecarContainer {
			continue
		}
		base := fmt.Sprintf("/spec/containers/%d", i)
		ops = append(ops, envOps(base, c.Env, env)...)
		if !a.SidecarContainer {
			ops = append(ops, mountOps(base, c.VolumeMounts)...)
		}
	}
	ops = append(ops, volumeOps(pod.Spec.Volumes)...)
	if a.SidecarContainer {
		ops = append(ops, sidecarOps(pod, a, opt)...)
	}
	return ops
}

// labelOps adds the wanted labels the Pod lacks. Labels that differ are
// refused before (CheckLabels), so they are never replaced here.
func labelOps(have, want map[string]string) []Op {
	keys := make([]string, 0, len(want))
	for k := range want {
		if _, ok := have[k]; !ok {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	if len(have) == 0 {
		return []Op{{Op: "add", Path: "/metadata/labels", Value: want}}
	}
	sort.Strings(keys)
	ops := make([]Op, 0, len(keys))
	for _, k := range keys {
		ops = append(ops, Op{Op: "add", Path: "/metadata/labels/" + pointerEscape(k), Value: want[k]})
	}
	return ops
}

// pointerEscape escapes one JSON Pointer token (RFC 6901): the '/' of
// kar.ibm.com/app would otherwise start a new token.
func pointerEscape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// envOps sets each wanted variable: added when absent, its value replaced
// when the container sets it differently (the annotations are the source of
// truth for the kar variables), other variables kept.
func envOps(base string, have []corev1.EnvVar, want []corev1.EnvVar) []Op {
	if len(have) == 0 {
		return []Op{{Op: "add", Path: base + "/env", Value: want}}
	}
	var ops []Op
	for _, w := range want {
		found := false
		for j, h := range have {
			if h.Name != w.Name {
				continue
			}
			found = true
			if h.Value != w.Value || h.ValueFrom != nil {
				ops = append(ops, Op{Op: "replace", Path: fmt.Sprintf("%s/env/%d", base, j), Value: w})
			}
			break
		}
		if !found {
			ops = append(ops, Op{Op: "add", Path: base + "/env/-", Value: w})
		}
	}
	return ops
}

func configMount() corev1.VolumeMount {
	return corev1.VolumeMount{Name: ConfigVolumeName, MountPath: ConfigMountPath, ReadOnly: true}
}

func mountOps(base string, have []corev1.VolumeMount) []Op {
	for _, m := range have {
		if m.Name == ConfigVolumeName || m.MountPath == ConfigMountPath {
			return nil
		}
	}
	if len(have) == 0 {
		return []Op{{Op: "add", Path: base + "/volumeMounts", Value: []corev1.VolumeMount{configMount()}}}
	}
	return []Op{{Op: "add", Path: base + "/volumeMounts/-", Value: configMount()}}
}

func volumeOps(have []corev1.Volume) []Op {
	for _, v := range have {
		if v.Name == ConfigVolumeName {
			return nil
		}
	}
	vol := corev1.Volume{Name: ConfigVolumeName, VolumeSource: corev1.VolumeSource{
		Secret: &corev1.SecretVolumeSource{SecretName: RuntimeConfigSecret},
	}}
	if len(have) == 0 {
		return []Op{{Op: "add", Path: "/spec/volumes", Value: []corev1.Volume{vol}}}
	}
	return []Op{{Op: "add", Path: "/spec/volumes/-", Value: vol}}
}

// SidecarContainer is the kar container added in sidecar mode.
func SidecarContainer(a *Annotations, opt Options) corev1.Container {
	args := []string{"run", "-app", a.App, "-app_port", strconv.Itoa(a.AppPort), "-runtime_port", strconv.Itoa(a.RuntimePort)}
	args = append(args, a.RunFlags()...)
	no := false
	// kar serves its REST API on 127.0.0.1 only (it has no
	// authentication), where the kubelet's httpGet probes cannot reach:
	// the probe and the hook run `kar probe` inside the container, which
	// calls GET /kar/v1/system/health and POST /kar/v1/system/shutdown on
	// the loopback (an httpGet hook could not POST either).
	probe := func(what string) []string {
		return []string{"/kar/bin/kar", "probe", "-runtime_port", strconv.Itoa(a.RuntimePort), what}
	}
	return corev1.Container{
		Name:            SidecarContainerName,
		Image:           opt.SidecarImage,
		ImagePullPolicy: opt.PullPolicy,
		Command:         []string{"/kar/bin/kar"},
		Args:            args,
		Env: []corev1.EnvVar{
			{Name: "KAR_POD_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
			{Name: "KAR_POD_NAME", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}},
		},
		Ports:        sidecarPorts(a),
		VolumeMounts: []corev1.VolumeMount{configMount()},
		LivenessProbe: &corev1.Probe{
			ProbeHandler:   corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: probe("health")}},
			PeriodSeconds:  10,
			TimeoutSeconds: 5,
			// Three misses: a sidecar still connecting to Redis and
			// Kafka (up to 15 s) is not restarted.
			FailureThreshold: 3,
		},
		Lifecycle: &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{Command: probe("shutdown")}}},
		SecurityContext: &corev1.SecurityContext{
			AllowPrivilegeEscalation: &no,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
		},
	}
}

func sidecarOps(pod *corev1.Pod, a *Annotations, opt Options) []Op {
	var ops []Op
	// A container named "kar" means already injected (or the user's own):
	// adding a second one would be rejected by the API server.
	if !hasContainer(pod, SidecarContainerName) {
		ops = append(ops, Op{Op: "add", Path: "/spec/containers/-", Value: SidecarContainer(a, opt)})
	}
	if opt.ImagePullSecret == "" {
		return ops
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		if s.Name == opt.ImagePullSecret {
			return ops
		}
	}
	ref := corev1.LocalObjectReference{Name: opt.ImagePullSecret}
	if len(pod.Spec.ImagePullSecrets) == 0 {
		return append(ops, Op{Op: "add", Path: "/spec/imagePullSecrets", Value: []corev1.LocalObjectReference{ref}})
	}
	return append(ops, Op{Op: "add", Path: "/spec/imagePullSecrets/-", Value: ref})
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range pod.Spec.Containers {
		if c.Name == name {
			return true
		}
	}
	return false
}

// Prometheus' scrape annotations, read by the common kubernetes_sd
// relabelling of Prometheus' example configuration.
const (
	ScrapeAnnotation     = "prometheus.io/scrape"
	ScrapePortAnnotation = "prometheus.io/port"
	ScrapePathAnnotation = "prometheus.io/path"
	// MetricsPortName names the sidecar's metrics port, which the
	// PodMonitor of `kar k8s manifests -pod-monitor` selects.
	MetricsPortName = "kar-metrics"
)

// scrapeOps asks Prometheus to scrape the sidecar's metrics port, unless
// the Pod has scrape annotations of its own (its component's metrics,
// which kar must not hide; a PodMonitor finds the sidecar by port name).
func scrapeOps(have map[string]string, port int) []Op {
	if port == 0 {
		return nil
	}
	for _, k := range []string{ScrapeAnnotation, ScrapePortAnnotation, ScrapePathAnnotation} {
		if _, ok := have[k]; ok {
			return nil
		}
	}
	ops := []Op{}
	for _, kv := range [][2]string{{ScrapeAnnotation, "true"}, {ScrapePortAnnotation, strconv.Itoa(port)}, {ScrapePathAnnotation, "/metrics"}} {
		if len(have) == 0 && len(ops) == 0 {
			// Never so when injected (kar's annotations are there), but
			// a patch must not add to a map that is absent.
			ops = append(ops, Op{Op: "add", Path: "/metadata/annotations", Value: map[string]string{}})
		}
		ops = append(ops, Op{Op: "add", Path: "/metadata/annotations/" + pointerEscape(kv[0]), Value: kv[1]})
	}
	return ops
}

// sidecarPorts are the kar container's ports: the REST API's (on the
// loopback, named for documentation) and the metrics port.
func sidecarPorts(a *Annotations) []corev1.ContainerPort {
	ports := []corev1.ContainerPort{{Name: "kar", ContainerPort: int32(a.RuntimePort), Protocol: corev1.ProtocolTCP}}
	if p := a.Metrics(); p != 0 {
		ports = append(ports, corev1.ContainerPort{Name: MetricsPortName, ContainerPort: int32(p), Protocol: corev1.ProtocolTCP})
	}
	return ports
}
