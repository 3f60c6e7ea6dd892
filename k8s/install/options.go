// Package install puts kar's runtime system into a Kubernetes or OpenShift
// cluster (`kar k8s deploy`), prints it as YAML (`kar k8s manifests`),
// removes it (`kar k8s undeploy`) and enables namespaces for kar Pods
// (`kar k8s namespace enable|disable`).
//
// Everything kar creates carries the label app.kubernetes.io/part-of=kar and
// has a fixed name, so undeploy removes exactly what deploy made.
package install

import (
	"fmt"
	"net/url"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// Names of the runtime system (the KAR contract and our own).
const (
	Namespace           = "kar-system"
	EnabledLabel        = "kar.ibm.com/enabled"
	RuntimeConfigSecret = "kar.ibm.com.runtime-config"
	ImagePullSecret     = "kar.ibm.com.image-pull"
	InjectorName        = "kar-injector"
	InjectorTLSSecret   = "kar-injector-tls"
	WebhookName         = "kar-injector"
	RedisName           = "kar-redis"
	RedisConfigSecret   = "kar-redis-config"
	RedisUser           = "karmesh"
	KafkaName           = "kar-kafka"
	PartOfLabel         = "app.kubernetes.io/part-of"
	ManagedByLabel      = "app.kubernetes.io/managed-by"

	// LocalRegistry is where `make docker` pushes locally built images.
	LocalRegistry = "localhost:5000/kar"
	// ReleaseRegistry holds the released images, one repository each as
	// quay.io allows: quay.io/ibm/kar-sidecar:VERSION (the kar image),
	// quay.io/ibm/kar-injector:VERSION, quay.io/ibm/kar-examples-<example>.
	ReleaseRegistry = "quay.io/ibm"

	// NodePorts of the optional external Services: the ports of
	// scripts/kar-env-local.sh, so a laptop `kar run` joins a kind/k3d mesh.
	RedisNodePort = 31379
	KafkaNodePort = 31093

	RedisImage = "docker.io/library/redis:7.2"
	KafkaImage = "docker.io/apache/kafka:3.7.0"
)

// Options are the flags shared by deploy and manifests.
type Options struct {
	// OpenShift: no fixed UIDs or fsGroups, so the restricted SCC assigns them.
	OpenShift bool
	// ManagedCredentials names IBM Cloud service keys for Databases for
	// Redis and Event Streams: a service credential name (read with
	// IBMCLOUD_API_KEY) or a file of the keys (see ManagedConfig). No
	// in-cluster Redis or Kafka then.
	ManagedCredentials string
	// Release selects released images of this version from ReleaseRegistry
	// (or Registry); empty means locally built ones (tag latest).
	Release string
	// Registry overrides the image registry (host[/path]); with
	// RegistryUser and RegistryPassword it gets the image-pull secret.
	Registry         string
	RegistryUser     string
	RegistryPassword string
	// PullPolicy for kar's images ("" = Kubernetes' default).
	PullPolicy corev1.PullPolicy
	// WebhookURL makes the API server call the injector at this URL instead
	// of the in-cluster Service (for an injector running outside the cluster).
	WebhookURL string
	// NodePorts exposes Redis and Kafka on RedisNodePort and KafkaNodePort.
	NodePorts bool
	// StorageClass of the Redis and Kafka volumes ("" = the cluster default).
	StorageClass string
	// Monitoring adds a PodMonitor of the sidecars and the Grafana
	// dashboard (manifests only: both need the Prometheus Operator's and
	// Grafana's resources, which not every cluster has).
	Monitoring bool
}

// Image returns the reference of one of kar's images ("kar", "kar-injector").
// A registry of our own (-registry, default localhost:5000/kar) holds them
// as `make docker REPO=...` pushes them: REPO/kar:TAG, REPO/kar-injector:TAG.
func (o *Options) Image(name string) string {
	if o.Release != "" && o.Registry == "" {
		if name == "kar" {
			name = "kar-sidecar"
		}
		return ReleaseRegistry + "/" + name + ":" + o.Release
	}
	reg, tag := LocalRegistry, "latest"
	if o.Registry != "" {
		reg = strings.TrimSuffix(o.Registry, "/")
	}
	if o.Release != "" {
		tag = o.Release
	}
	return reg + "/" + name + ":" + tag
}

// PullSecret reports whether the install carries an image-pull secret.
func (o *Options) PullSecret() bool { return o.Registry != "" && o.RegistryPassword != "" }

// Validate checks the options and says how to fix them.
func (o *Options) Validate() error {
	if o.Registry != "" {
		if strings.Contains(o.Registry, "://") || !hostPort(o.Registry) {
			return fmt.Errorf("-registry %q: give a registry host and optional path, like us.icr.io/myspace or localhost:5000/kar", o.Registry)
		}
		if o.RegistryPassword != "" && o.RegistryUser == "" {
			return fmt.Errorf("-registry-user is required with KAR_REGISTRY_PASSWORD (for IBM Cloud Container Registry it is iamapikey)")
		}
	} else if o.RegistryPassword != "" || o.RegistryUser != "" {
		return fmt.Errorf("-registry-user / KAR_REGISTRY_PASSWORD need -registry HOST")
	}
	if o.Release != "" && strings.ContainsAny(o.Release, " /:@") {
		return fmt.Errorf("-r %q: give a release version like 1.3.10", o.Release)
	}
	switch o.PullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		return fmt.Errorf("-image-pull-policy %q: use Always, IfNotPresent or Never", o.PullPolicy)
	}
	if o.WebhookURL != "" {
		u, err := url.Parse(o.WebhookURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("-webhook-url %q: give an https:// URL such as https://127.0.0.1:8443/inject-sidecar", o.WebhookURL)
		}
	}
	if o.ManagedCredentials != "" && o.NodePorts {
		return fmt.Errorf("-node-ports exposes the in-cluster Redis and Kafka, which -m replaces: use one or the other")
	}
	return nil
}

// hostPort accepts host:port[/path] registry names.
func hostPort(s string) bool {
	host := strings.SplitN(s, "/", 2)[0]
	if strings.ContainsAny(s, " \t@") {
		return false
	}
	i := strings.LastIndex(host, ":")
	if i < 0 {
		return !strings.Contains(s, ":")
	}
	for _, c := range host[i+1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return !strings.Contains(s[len(host):], ":")
}

// registryHost is the host part of Registry, the key of the docker config.
func (o *Options) registryHost() string {
	return strings.SplitN(o.Registry, "/", 2)[0]
}
