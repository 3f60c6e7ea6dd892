// Package injector holds the admission logic of kar-injector: it reads a
// Pod's kar.ibm.com/ annotations and answers with a JSON patch that gives the
// Pod what kar needs (env, the runtime-config volume, optionally a sidecar
// container), or denies the Pod when an annotation is wrong.
package injector

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// Annotation names, the Kubernetes contract of KAR.
const (
	Prefix               = "kar.ibm.com/"
	AnnotationApp        = Prefix + "app"
	AnnotationService    = Prefix + "service"
	AnnotationSidecar    = Prefix + "sidecarContainer"
	DefaultAppPort       = 8080
	DefaultRuntimePort   = 3500
	RuntimeConfigSecret  = "kar.ibm.com.runtime-config"
	ImagePullSecret      = "kar.ibm.com.image-pull"
	ConfigMountPath      = "/var/run/secrets/kar.ibm.com"
	ConfigVolumeName     = "kar-runtime-config"
	SidecarContainerName = "kar"
)

// Annotations is what a Pod asks of kar. Following Dapr's injector, each
// annotation is one tagged field with its default beside it; unlike Dapr, a
// value that does not parse is an error naming the annotation, never
// silently the default.
type Annotations struct {
	App         string   `annotation:"app"`
	Service     string   `annotation:"service"`
	Actors      []string `annotation:"actors"`
	Verbose     string   `annotation:"verbose" default:"error"`
	AppPort     int      `annotation:"appPort" default:"8080"`
	RuntimePort int      `annotation:"runtimePort" default:"3500"`
	ExtraArgs   []string `annotation:"extraArgs"`
	// A separate kar container by default, as in KAR: an image need not
	// hold kar. "false" asks for kar inside the app container (the kar
	// base images), as KAR's own example manifests do.
	SidecarContainer bool `annotation:"sidecarContainer" default:"true"`
	// MetricsPort (kar's own, not KAR's): the sidecar also serves GET
	// /metrics on this port of the Pod's IP (-metrics_port), where
	// Prometheus can scrape it; the REST API stays on 127.0.0.1. Unset
	// (0): DefaultMetricsPort in sidecar mode, none in in-container mode,
	// whose image may hold a kar without the flag; "0" (-1 here): none.
	MetricsPort int `annotation:"metricsPort"`
}

// DefaultMetricsPort is the sidecar's metrics port when the Pod does not
// say: the OpenTelemetry Prometheus exporter's port, rarely an app's.
const DefaultMetricsPort = 9464

// Metrics is the port the sidecar serves its metrics on, 0 for none.
func (a *Annotations) Metrics() int {
	switch {
	case a.MetricsPort < 0:
		return 0
	case a.MetricsPort == 0 && a.SidecarContainer:
		return DefaultMetricsPort
	}
	return a.MetricsPort
}

var (
	// Names of apps, services and actor types end up in Kafka topic names
	// and Redis keys, so keep them to a conservative alphabet.
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]*$`)
	verbosity = map[string]bool{"error": true, "warn": true, "info": true, "debug": true}
)

// KnownAnnotations lists every kar.ibm.com/ annotation the injector reads.
func KnownAnnotations() []string {
	t := reflect.TypeOf(Annotations{})
	out := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		out = append(out, Prefix+t.Field(i).Tag.Get("annotation"))
	}
	return out
}

// ParseAnnotations reads the kar annotations of a Pod. It returns
// (nil, nil) when the Pod has none (kar leaves it alone), and an error
// naming the wrong annotation and what it should look like otherwise.
func ParseAnnotations(ann map[string]string) (*Annotations, error) {
	var present []string
	for k := range ann {
		if strings.HasPrefix(k, Prefix) {
			present = append(present, k)
		}
	}
	if len(present) == 0 {
		return nil, nil
	}
	sort.Strings(present)
	known := map[string]bool{}
	for _, k := range KnownAnnotations() {
		known[k] = true
	}
	for _, k := range present {
		if !known[k] {
			return nil, fmt.Errorf("unknown annotation %s (check its spelling; kar reads %s)", k, strings.Join(KnownAnnotations(), ", "))
		}
	}
	if strings.TrimSpace(ann[AnnotationApp]) == "" {
		if _, ok := ann[AnnotationApp]; ok {
			return nil, fmt.Errorf("annotation %s is empty: set it to the name of the kar application", AnnotationApp)
		}
		return nil, fmt.Errorf("annotation %s is missing: it is required when other kar annotations are set (found %s)", AnnotationApp, strings.Join(present, ", "))
	}

	a := &Annotations{}
	v := reflect.ValueOf(a).Elem()
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		key := Prefix + sf.Tag.Get("annotation")
		raw, ok := ann[key]
		if !ok {
			raw = sf.Tag.Get("default")
		}
		raw = strings.TrimSpace(raw)
		if err := setField(v.Field(i), sf.Name, raw); err != nil {
			return nil, fmt.Errorf("annotation %s=%q: %w", key, ann[key], err)
		}
	}
	if a.AppPort == a.RuntimePort {
		return nil, fmt.Errorf("annotations %sappPort and %sruntimePort are both %d: the component and its sidecar share the Pod's network, give them different ports", Prefix, Prefix, a.AppPort)
	}
	if p := a.Metrics(); p != 0 && (p == a.AppPort || p == a.RuntimePort) {
		return nil, fmt.Errorf("annotation %smetricsPort is %d, which the app or runtime port is too: give it a port of its own (or 0 for no metrics port)", Prefix, p)
	}
	return a, nil
}

func setField(f reflect.Value, name, raw string) error {
	switch name {
	case "App", "Service":
		if raw != "" && !nameRE.MatchString(raw) {
			return fmt.Errorf("not a valid name: use letters, digits, '-', '_' and '.', starting with a letter or digit")
		}
		// The Pod is labelled with the name too (kubectl get pods -l
		// kar.ibm.com/app=A), so it must be a label value as well.
		if errs := validation.IsValidLabelValue(raw); len(errs) > 0 {
			return fmt.Errorf("the Pod gets it as a label, and it is not a valid label value: %s", errs[0])
		}
		f.SetString(raw)
	case "Verbose":
		if !verbosity[raw] {
			return fmt.Errorf("unknown log level: use error, warn, info or debug")
		}
		f.SetString(raw)
	case "MetricsPort":
		if raw == "" {
			return nil
		}
		p, err := strconv.Atoi(raw)
		if err != nil || p < 0 || p > 65535 {
			return fmt.Errorf("not a port number: use an integer from 1 to 65535, or 0 for no metrics port")
		}
		if p == 0 {
			p = -1
		}
		f.SetInt(int64(p))
	case "AppPort", "RuntimePort":
		p, err := strconv.Atoi(raw)
		if err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("not a port number: use an integer from 1 to 65535")
		}
		f.SetInt(int64(p))
	case "Actors":
		if raw == "" {
			return nil
		}
		var types []string
		for _, s := range strings.Split(raw, ",") {
			s = strings.TrimSpace(s)
			if !nameRE.MatchString(s) {
				return fmt.Errorf("not a comma-separated list of actor types (like \"Cart,Order\"): %q is not a valid actor type name", s)
			}
			types = append(types, s)
		}
		f.Set(reflect.ValueOf(types))
	case "ExtraArgs":
		args, err := splitExtraArgs(raw)
		if err != nil {
			return err
		}
		if len(args) > 0 {
			f.Set(reflect.ValueOf(args))
		}
	case "SidecarContainer":
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return fmt.Errorf("not a boolean: use \"true\" or \"false\"")
		}
		f.SetBool(b)
	default:
		// A field added to Annotations without parsing here is a bug caught by the tests.
		return fmt.Errorf("internal error: no parser for field %s", name)
	}
	return nil
}

// splitExtraArgs reads kar.ibm.com/extraArgs in either spelling: KAR's,
// items separated by commas ("-v,info,-h2c"), or words separated by spaces
// ("-v info -h2c"). A value is KAR's form when it has a comma and none of
// its comma-separated items has a space inside, so a flag value that holds
// commas is written with spaces ("-actors A,B -h2c").
func splitExtraArgs(raw string) ([]string, error) {
	if raw == "" {
		return nil, nil
	}
	args := strings.Fields(raw)
	if strings.Contains(raw, ",") {
		items := strings.Split(raw, ",")
		commaForm := true
		for i, it := range items {
			items[i] = strings.TrimSpace(it)
			if strings.ContainsAny(items[i], " \t\n") {
				commaForm = false
			}
		}
		if commaForm {
			for _, it := range items {
				if it == "" {
					return nil, fmt.Errorf("an empty item between commas (KAR's form is \"-v,info,-h2c\")")
				}
			}
			args = items
		} else {
			for _, a := range args {
				if strings.HasPrefix(a, ",") || strings.HasSuffix(a, ",") {
					return nil, fmt.Errorf("mixes commas and spaces between items: separate them with spaces (\"-v info -h2c\") or with commas only (KAR's \"-v,info,-h2c\")")
				}
			}
		}
	}
	if !strings.HasPrefix(args[0], "-") {
		return nil, fmt.Errorf("must be kar run flags (like \"-v info -h2c\" or KAR's \"-v,info,-h2c\"), starting with '-'")
	}
	for _, a := range args {
		if a == "--" {
			return nil, fmt.Errorf("may hold only kar run flags, not \"--\": the component's command is the container's")
		}
	}
	// A flag takes at most one value: a second word in a row would reach
	// kar run as the component's command.
	for i := 1; i < len(args); i++ {
		prev := args[i-1]
		if strings.HasPrefix(args[i], "-") || (strings.HasPrefix(prev, "-") && !strings.Contains(prev, "=")) {
			continue
		}
		return nil, fmt.Errorf("%q after %q is neither a flag nor a flag's value (write a value holding commas with spaces: \"-actors A,B\")", args[i], prev)
	}
	return args, nil
}

// Labels are the Pod labels kar sets, as KAR does, so that
// `kubectl get pods -l kar.ibm.com/app=A` finds an application's Pods.
func (a *Annotations) Labels() map[string]string {
	l := map[string]string{AnnotationApp: a.App}
	if a.Service != "" {
		l[AnnotationService] = a.Service
	}
	return l
}

// CheckLabels refuses a Pod (or Pod template) whose own kar.ibm.com/ labels
// say something else than its annotations: replacing such a label could
// take the Pod out of its ReplicaSet's selector, which would then make
// Pods for ever.
func (a *Annotations) CheckLabels(have map[string]string) error {
	keys := make([]string, 0, 2)
	for k := range a.Labels() {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	want := a.Labels()
	for _, k := range keys {
		if v, ok := have[k]; ok && v != want[k] {
			return fmt.Errorf("label %s=%q differs from annotation %s=%q: kar labels the Pod with the annotation's value; remove the label or give it the same value", k, v, k, want[k])
		}
	}
	return nil
}

// RunFlags are the `kar run` flags other than -app that the annotations ask
// for: in in-container mode they travel in KAR_EXTRA_ARGS, in sidecar mode
// on the sidecar's command line.
func (a *Annotations) RunFlags() []string {
	var out []string
	if a.Service != "" {
		out = append(out, "-service", a.Service)
	}
	if len(a.Actors) > 0 {
		out = append(out, "-actors", strings.Join(a.Actors, ","))
	}
	if a.Verbose != "" && a.Verbose != "error" {
		out = append(out, "-v", a.Verbose)
	}
	if p := a.Metrics(); p != 0 {
		out = append(out, "-metrics_port", strconv.Itoa(p))
	}
	return append(out, a.ExtraArgs...)
}
