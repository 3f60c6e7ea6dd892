package install

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/kar-runtime/kar/k8s/certs"
	"github.com/kar-runtime/kar/k8s/injector"
)

// Object is one Kubernetes object of the install.
type Object interface {
	metav1.Object
	runtime.Object
}

// Generated holds what deploy makes once and keeps across re-deploys.
type Generated struct {
	// RedisPassword of the ACL user karmesh (in-cluster Redis).
	RedisPassword string
	// TLS is the injector's serving certificate; CABundle the PEM CAs the
	// API server trusts for it.
	TLS      *certs.Pair
	CABundle []byte
	// Managed is the runtime config read from -m service credentials.
	Managed map[string]string
}

func labels(component string) map[string]string {
	return map[string]string{
		PartOfLabel:                  "kar",
		ManagedByLabel:               "kar",
		"app.kubernetes.io/name":     component,
		"app.kubernetes.io/instance": component,
	}
}

func selector(component string) map[string]string {
	return map[string]string{"app.kubernetes.io/name": component}
}

func meta(name, component string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: labels(component)}
}

// Objects is the whole install, in the order it is applied.
func Objects(o *Options, g *Generated) ([]Object, error) {
	rc, err := runtimeConfig(o, g)
	if err != nil {
		return nil, err
	}
	objs := []Object{
		&corev1.Namespace{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
			ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: labels("kar")},
		},
		secret(meta(RuntimeConfigSecret, "kar"), rc, corev1.SecretTypeOpaque),
	}
	if o.PullSecret() {
		dc, err := dockerConfig(o)
		if err != nil {
			return nil, err
		}
		objs = append(objs, secret(meta(ImagePullSecret, "kar"), map[string]string{corev1.DockerConfigJsonKey: dc}, corev1.SecretTypeDockerConfigJson))
	}
	if o.ManagedCredentials == "" {
		objs = append(objs, redisObjects(o, g)...)
		objs = append(objs, kafkaObjects(o)...)
	}
	inj, err := injectorObjects(o, g)
	if err != nil {
		return nil, err
	}
	return append(append(objs, inj...), scalerObjects(o)...), nil
}

// runtimeConfig is the content of kar.ibm.com.runtime-config: one key per
// config file name of the kar runtime (sidecar/config).
func runtimeConfig(o *Options, g *Generated) (map[string]string, error) {
	if o.ManagedCredentials != "" {
		if g.Managed == nil {
			return nil, fmt.Errorf("internal error: managed credentials not read")
		}
		return g.Managed, nil
	}
	if g.RedisPassword == "" {
		return nil, fmt.Errorf("internal error: no Redis password generated")
	}
	return map[string]string{
		"kafka_brokers":    fmt.Sprintf("%s-0.%s.%s.svc:9092", KafkaName, KafkaName, Namespace),
		"kafka_version":    "2.8.0",
		"kafka_enable_tls": "false",
		"redis_host":       fmt.Sprintf("%s.%s.svc", RedisName, Namespace),
		"redis_port":       "6379",
		"redis_enable_tls": "false",
		"redis_user":       RedisUser,
		"redis_password":   g.RedisPassword,
	}, nil
}

func secret(m metav1.ObjectMeta, data map[string]string, typ corev1.SecretType) *corev1.Secret {
	s := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: m,
		Type:       typ,
		Data:       map[string][]byte{},
	}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func dockerConfig(o *Options) (string, error) {
	host := o.registryHost()
	auth := base64.StdEncoding.EncodeToString([]byte(o.RegistryUser + ":" + o.RegistryPassword))
	b, err := json.Marshal(map[string]any{"auths": map[string]any{host: map[string]string{
		"username": o.RegistryUser, "password": o.RegistryPassword, "auth": auth,
	}}})
	return string(b), err
}

// podSecurity: on OpenShift the restricted SCC picks the UID and fsGroup
// from the namespace's range, so none is fixed here; elsewhere the images'
// own users are named so volumes are writable.
func podSecurity(o *Options, uid int64) *corev1.PodSecurityContext {
	sc := &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}}
	if !o.OpenShift {
		sc.RunAsUser, sc.RunAsGroup, sc.FSGroup = &uid, &uid, &uid
	}
	yes := true
	sc.RunAsNonRoot = &yes
	return sc
}

func containerSecurity() *corev1.SecurityContext {
	no := false
	return &corev1.SecurityContext{
		AllowPrivilegeEscalation: &no,
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// smallRequests: what the injector and kar-scaler ask for (both idle
// mostly, a few MiB each).
func smallRequests() corev1.ResourceRequirements {
	return corev1.ResourceRequirements{Requests: corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("10m"),
		corev1.ResourceMemory: resource.MustParse("32Mi"),
	}}
}

// readOnlySecurity is containerSecurity with a read-only root file system.
func readOnlySecurity() *corev1.SecurityContext {
	ro := true
	sc := containerSecurity()
	sc.ReadOnlyRootFilesystem = &ro
	return sc
}

func volumeClaim(o *Options, component, size string) corev1.PersistentVolumeClaim {
	pvc := corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data", Labels: labels(component)},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{
				corev1.ResourceStorage: resource.MustParse(size),
			}},
		},
	}
	if o.StorageClass != "" {
		pvc.Spec.StorageClassName = &o.StorageClass
	}
	return pvc
}

func tcpProbe(port int) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler:        corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(int32(port))}},
		InitialDelaySeconds: 5,
		PeriodSeconds:       10,
	}
}

func service(name, component string, ports []corev1.ServicePort, headless bool) *corev1.Service {
	s := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: meta(name, component),
		Spec:       corev1.ServiceSpec{Selector: selector(component), Ports: ports},
	}
	if headless {
		s.Spec.ClusterIP = corev1.ClusterIPNone
	}
	return s
}

func nodePortService(name, component string, port, nodePort int) *corev1.Service {
	s := service(name, component, []corev1.ServicePort{{Name: "external", Port: int32(port), TargetPort: intstr.FromInt32(int32(port)), NodePort: int32(nodePort)}}, false)
	s.Spec.Type = corev1.ServiceTypeNodePort
	return s
}

func redisObjects(o *Options, g *Generated) []Object {
	conf := "port 6379\nbind * -::*\nprotected-mode no\ndir /data\nappendonly yes\n" +
		"user default off\n" +
		"user " + RedisUser + " on >" + g.RedisPassword + " ~* &* +@all\n"
	one := int32(1)
	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: meta(RedisName, RedisName),
		Spec: appsv1.StatefulSetSpec{
			ServiceName: RedisName,
			Replicas:    &one,
			Selector:    &metav1.LabelSelector{MatchLabels: selector(RedisName)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(RedisName)},
				Spec: corev1.PodSpec{
					SecurityContext: podSecurity(o, 999), // redis in the official image
					Containers: []corev1.Container{{
						Name:            "redis",
						Image:           RedisImage,
						Command:         []string{"redis-server", "/etc/kar-redis/redis.conf"},
						Ports:           []corev1.ContainerPort{{Name: "redis", ContainerPort: 6379}},
						ReadinessProbe:  tcpProbe(6379),
						SecurityContext: containerSecurity(),
						VolumeMounts: []corev1.VolumeMount{
							{Name: "data", MountPath: "/data"},
							{Name: "config", MountPath: "/etc/kar-redis", ReadOnly: true},
						},
					}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{
						Secret: &corev1.SecretVolumeSource{SecretName: RedisConfigSecret},
					}}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{volumeClaim(o, RedisName, "1Gi")},
		},
	}
	objs := []Object{
		// The ACL password is in the config file, so the file is a Secret.
		secret(meta(RedisConfigSecret, RedisName), map[string]string{"redis.conf": conf}, corev1.SecretTypeOpaque),
		service(RedisName, RedisName, []corev1.ServicePort{{Name: "redis", Port: 6379, TargetPort: intstr.FromInt32(6379)}}, false),
		sts,
	}
	if o.NodePorts {
		objs = append(objs, nodePortService(RedisName+"-external", RedisName, 6379, RedisNodePort))
	}
	return objs
}

// kafkaClusterID is the fixed KRaft cluster id of the in-cluster Kafka
// (any 16 bytes, base64url): fixed so a restarted broker finds its own data.
const kafkaClusterID = "a2FyLWthZmthLWNsdXN0ZXI"

func kafkaObjects(o *Options) []Object {
	host := fmt.Sprintf("%s-0.%s.%s.svc", KafkaName, KafkaName, Namespace)
	listeners := "PLAINTEXT://:9092,CONTROLLER://:9093"
	advertised := "PLAINTEXT://" + host + ":9092"
	protocols := "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
	if o.NodePorts {
		listeners += ",EXTERNAL://:9094"
		advertised += ",EXTERNAL://localhost:" + strconv.Itoa(KafkaNodePort)
		protocols += ",EXTERNAL:PLAINTEXT"
	}
	env := []corev1.EnvVar{
		{Name: "CLUSTER_ID", Value: kafkaClusterID},
		{Name: "KAFKA_NODE_ID", Value: "1"},
		{Name: "KAFKA_PROCESS_ROLES", Value: "broker,controller"},
		{Name: "KAFKA_LISTENERS", Value: listeners},
		{Name: "KAFKA_ADVERTISED_LISTENERS", Value: advertised},
		{Name: "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", Value: protocols},
		{Name: "KAFKA_CONTROLLER_LISTENER_NAMES", Value: "CONTROLLER"},
		{Name: "KAFKA_INTER_BROKER_LISTENER_NAME", Value: "PLAINTEXT"},
		{Name: "KAFKA_CONTROLLER_QUORUM_VOTERS", Value: "1@localhost:9093"},
		{Name: "KAFKA_LOG_DIRS", Value: "/var/lib/kafka/data/logs"},
		{Name: "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", Value: "1"},
		{Name: "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", Value: "1"},
		{Name: "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", Value: "1"},
		{Name: "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", Value: "0"},
	}
	one := int32(1)
	ports := []corev1.ContainerPort{{Name: "kafka", ContainerPort: 9092}, {Name: "controller", ContainerPort: 9093}}
	if o.NodePorts {
		ports = append(ports, corev1.ContainerPort{Name: "external", ContainerPort: 9094})
	}
	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: meta(KafkaName, KafkaName),
		Spec: appsv1.StatefulSetSpec{
			ServiceName: KafkaName,
			Replicas:    &one,
			Selector:    &metav1.LabelSelector{MatchLabels: selector(KafkaName)},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels(KafkaName)},
				Spec: corev1.PodSpec{
					SecurityContext: podSecurity(o, 1000), // appuser in apache/kafka
					Containers: []corev1.Container{{
						Name:            "kafka",
						Image:           KafkaImage,
						Env:             env,
						Ports:           ports,
						ReadinessProbe:  tcpProbe(9092),
						SecurityContext: containerSecurity(),
						VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/var/lib/kafka/data"}},
					}},
				},
			},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{volumeClaim(o, KafkaName, "4Gi")},
		},
	}
	// Headless, so each broker has the stable DNS name it advertises.
	objs := []Object{
		service(KafkaName, KafkaName, []corev1.ServicePort{{Name: "kafka", Port: 9092, TargetPort: intstr.FromInt32(9092)}}, true),
		sts,
	}
	if o.NodePorts {
		objs = append(objs, nodePortService(KafkaName+"-external", KafkaName, 9094, KafkaNodePort))
	}
	return objs
}

func injectorObjects(o *Options, g *Generated) ([]Object, error) {
	if g.TLS == nil {
		return nil, fmt.Errorf("internal error: no injector certificate generated")
	}
	args := []string{
		"-tls_cert_file", "/var/run/secrets/kar-injector/tls.crt",
		"-tls_private_key_file", "/var/run/secrets/kar-injector/tls.key",
		"-port", "8443",
		"-sidecar_image", o.Image("kar"),
	}
	if o.PullSecret() {
		args = append(args, "-image_pull_secret", ImagePullSecret)
	}
	if o.PullPolicy != "" {
		args = append(args, "-image_pull_policy", string(o.PullPolicy))
	}
	one := int32(1)
	pod := corev1.PodSpec{
		SecurityContext: podSecurity(o, 65532),
		Containers: []corev1.Container{{
			Name:            InjectorName,
			Image:           o.Image("kar-injector"),
			ImagePullPolicy: o.PullPolicy,
			Command:         []string{"/kar/bin/kar-injector"},
			Args:            args,
			Ports:           []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
				Path: "/healthz", Port: intstr.FromInt32(8443), Scheme: corev1.URISchemeHTTPS,
			}}},
			Resources:       smallRequests(),
			SecurityContext: readOnlySecurity(),
			VolumeMounts:    []corev1.VolumeMount{{Name: "tls", MountPath: "/var/run/secrets/kar-injector", ReadOnly: true}},
		}},
		Volumes: []corev1.Volume{{Name: "tls", VolumeSource: corev1.VolumeSource{
			Secret: &corev1.SecretVolumeSource{SecretName: InjectorTLSSecret},
		}}},
	}
	if o.PullSecret() {
		pod.ImagePullSecrets = []corev1.LocalObjectReference{{Name: ImagePullSecret}}
	}
	dep := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: meta(InjectorName, InjectorName),
		Spec: appsv1.DeploymentSpec{
			Replicas: &one,
			Selector: &metav1.LabelSelector{MatchLabels: selector(InjectorName)},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels(InjectorName)}, Spec: pod},
		},
	}
	tlsSecret := secret(meta(InjectorTLSSecret, InjectorName), map[string]string{
		corev1.TLSCertKey:       string(g.TLS.Cert),
		corev1.TLSPrivateKeyKey: string(g.TLS.Key),
		"ca.crt":                string(g.CABundle),
	}, corev1.SecretTypeTLS)

	cc := admissionregistrationv1.WebhookClientConfig{CABundle: g.CABundle}
	if o.WebhookURL != "" {
		u := o.WebhookURL
		cc.URL = &u
	} else {
		path := injector.Path
		port := int32(443)
		cc.Service = &admissionregistrationv1.ServiceReference{Namespace: Namespace, Name: InjectorName, Path: &path, Port: &port}
	}
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	never := admissionregistrationv1.NeverReinvocationPolicy
	timeout := int32(10)
	scope := admissionregistrationv1.NamespacedScope
	// Only enabled namespaces; the injector itself also refuses
	// kar-system and kube-*, which a selector cannot match by prefix.
	nsSelector := &metav1.LabelSelector{
		MatchLabels: map[string]string{EnabledLabel: "true"},
		MatchExpressions: []metav1.LabelSelectorRequirement{{
			Key: "kubernetes.io/metadata.name", Operator: metav1.LabelSelectorOpNotIn,
			Values: []string{Namespace, "kube-system", "kube-public", "kube-node-lease"},
		}},
	}
	rule := func(group string, ops []admissionregistrationv1.OperationType, resources ...string) admissionregistrationv1.RuleWithOperations {
		return admissionregistrationv1.RuleWithOperations{Operations: ops, Rule: admissionregistrationv1.Rule{
			APIGroups: []string{group}, APIVersions: []string{"v1"}, Resources: resources, Scope: &scope}}
	}
	createUpdate := []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}
	ignore := admissionregistrationv1.Ignore
	wh := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta:   metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"},
		ObjectMeta: metav1.ObjectMeta{Name: WebhookName, Labels: labels(InjectorName)},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:              "inject-sidecar.kar.ibm.com",
			ClientConfig:      cc,
			Rules:             []admissionregistrationv1.RuleWithOperations{rule("", []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, "pods")},
			NamespaceSelector: nsSelector,
			// Fail: a kar Pod started without kar would only fail later.
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &never,
		}, {
			// Checks the Pod templates of workloads so `kubectl apply`
			// reports a bad annotation at once. A convenience: Ignore, so
			// controllers keep working while the injector is away.
			Name:         "check-templates.kar.ibm.com",
			ClientConfig: cc,
			Rules: []admissionregistrationv1.RuleWithOperations{
				rule("apps", createUpdate, "deployments", "statefulsets", "daemonsets", "replicasets"),
				rule("batch", createUpdate, "jobs", "cronjobs"),
			},
			NamespaceSelector:       nsSelector,
			FailurePolicy:           &ignore,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      &never,
		}},
	}
	return []Object{
		tlsSecret,
		service(InjectorName, InjectorName, []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(8443)}}, false),
		dep,
		wh,
	}, nil
}

// injectorHosts are the names the API server may use to reach the injector.
func injectorHosts(o *Options) []string {
	hosts := []string{
		InjectorName + "." + Namespace + ".svc",
		InjectorName + "." + Namespace + ".svc.cluster.local",
		InjectorName + "." + Namespace,
		InjectorName,
	}
	if o.WebhookURL != "" {
		if u, err := url.Parse(o.WebhookURL); err == nil {
			hosts = append([]string{u.Hostname()}, hosts...)
		}
	}
	return hosts
}
