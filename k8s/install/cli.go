package install

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
)

const usageText = `Usage: kar k8s COMMAND [flags]

Commands:
  deploy                  install kar into the cluster of the current kubeconfig context
  manifests               print the install as multi-document YAML instead of applying it
  scaledobject            print a KEDA ScaledObject scaling a Deployment on the mesh's load (kar-scaler)
  undeploy                remove everything deploy and namespace enable made
  namespace enable NS     create NS if needed, copy kar's secrets into it, label it kar.ibm.com/enabled=true
  namespace disable NS    remove the label and the copied secrets from NS (NS itself stays)

Run kar k8s COMMAND -h for its flags.
`

// Main runs `kar k8s ARGS...` and returns the exit code: 0, 1 (the cluster
// said no) or 2 (bad usage).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, "kar k8s: missing command\n\n"+usageText)
		return 2
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usageText)
		return 0
	case "deploy", "manifests":
		return deployCmd(ctx, args[0], args[1:], stdout, stderr)
	case "scaledobject":
		return scaledObjectCmd(args[1:], stdout, stderr)
	case "undeploy":
		return clusterCmd(ctx, "undeploy", args[1:], 0, stdout, stderr, func(ctx context.Context, c *Client, _ []string) error {
			return Undeploy(ctx, c, stdout)
		})
	case "namespace":
		if len(args) < 2 {
			fmt.Fprint(stderr, "kar k8s namespace: missing action: enable or disable\n\n"+usageText)
			return 2
		}
		switch args[1] {
		case "enable":
			return clusterCmd(ctx, "namespace enable", args[2:], 1, stdout, stderr, func(ctx context.Context, c *Client, pos []string) error {
				return EnableNamespace(ctx, c, pos[0], stdout)
			})
		case "disable":
			return clusterCmd(ctx, "namespace disable", args[2:], 1, stdout, stderr, func(ctx context.Context, c *Client, pos []string) error {
				return DisableNamespace(ctx, c, pos[0], stdout)
			})
		case "-h", "-help", "--help", "help":
			fmt.Fprint(stdout, usageText)
			return 0
		}
		fmt.Fprintf(stderr, "kar k8s namespace: unknown action %q: use enable or disable\n", args[1])
		return 2
	}
	fmt.Fprintf(stderr, "kar k8s: unknown command %q\n\n%s", args[0], usageText)
	return 2
}

type clusterFlags struct{ kubeconfig, context string }

func (cf *clusterFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&cf.kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, then ~/.kube/config)")
	fs.StringVar(&cf.context, "context", "", "kubeconfig context (default the current context)")
}

// parse accepts flags before and after the positional arguments, as in
// `kar k8s namespace enable myns -context kind-kar`. Usage asked for with
// -h goes to stdout, a flag error and usage to stderr.
func parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) ([]string, error) {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	defer fs.SetOutput(stderr)
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				_, _ = buf.WriteTo(stdout)
			} else {
				_, _ = buf.WriteTo(stderr)
			}
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// parseFlagsOnly parses a command that takes flags and no arguments; when
// it returns false, the command exits with the code (0 after -h).
func parseFlagsOnly(fs *flag.FlagSet, name string, args []string, stdout, stderr io.Writer) (int, bool) {
	pos, err := parse(fs, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0, false
	}
	if err != nil {
		return 2, false
	}
	if len(pos) > 0 {
		fmt.Fprintf(stderr, "kar k8s %s: unexpected argument %q (flags start with -)\n", name, pos[0])
		return 2, false
	}
	return 0, true
}

func newFlagSet(name, positional string) *flag.FlagSet {
	fs := flag.NewFlagSet("kar k8s "+name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: kar k8s %s [flags]%s\n\nFlags:\n", name, positional)
		fs.PrintDefaults()
	}
	return fs
}

func clusterCmd(ctx context.Context, name string, args []string, npos int, stdout, stderr io.Writer, run func(context.Context, *Client, []string) error) int {
	positional := ""
	if npos == 1 {
		positional = " NAMESPACE"
	}
	fs := newFlagSet(name, positional)
	var cf clusterFlags
	cf.register(fs)
	pos, err := parse(fs, args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	if len(pos) < npos {
		fmt.Fprintf(stderr, "kar k8s %s: missing namespace: give the name of the namespace, e.g. kar k8s %s myapps\n", name, name)
		return 2
	}
	if len(pos) > npos {
		fmt.Fprintf(stderr, "kar k8s %s: unexpected argument %q\n", name, pos[npos])
		return 2
	}
	if npos == 1 {
		if err := checkUserNamespace(pos[0]); err != nil {
			fmt.Fprintf(stderr, "kar k8s %s: %v\n", name, err)
			return 2
		}
	}
	c, err := NewClient(cf.kubeconfig, cf.context)
	if err != nil {
		fmt.Fprintf(stderr, "kar k8s %s: %v\n", name, err)
		return 1
	}
	if err := run(ctx, c, pos); err != nil {
		fmt.Fprintf(stderr, "kar k8s %s: %v\n", name, err)
		return 1
	}
	return 0
}

func deployCmd(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet(name, "")
	var o Options
	var cf clusterFlags
	if name == "deploy" {
		cf.register(fs)
	}
	var pullPolicy string
	fs.BoolVar(&o.OpenShift, "os", false, "OpenShift: no fixed UIDs or fsGroups (restricted SCC)")
	fs.StringVar(&o.ManagedCredentials, "m", "", "use managed Redis and Kafka: the IBM Cloud service `CREDENTIAL` name (read with IBMCLOUD_API_KEY) or a file of its keys (ibmcloud resource service-key NAME --output json)")
	fs.StringVar(&o.Release, "r", "", "use the released images of this `VERSION` ("+ReleaseRegistry+"/kar-sidecar, kar-injector; default: locally built images from "+LocalRegistry+", tag latest)")
	fs.StringVar(&o.Registry, "registry", "", "registry `HOST[/PATH]` holding kar's images as make docker REPO=HOST[/PATH] pushes them; with KAR_REGISTRY_PASSWORD set, the image-pull secret "+ImagePullSecret+" is created")
	fs.StringVar(&o.RegistryUser, "registry-user", os.Getenv("KAR_REGISTRY_USER"), "user of -registry (env KAR_REGISTRY_USER; the password comes only from env KAR_REGISTRY_PASSWORD)")
	fs.StringVar(&pullPolicy, "image-pull-policy", "", "pull policy of kar's images: Always, IfNotPresent or Never")
	fs.StringVar(&o.WebhookURL, "webhook-url", "", "`URL` where the API server calls the injector, instead of the in-cluster Service (an injector run outside the cluster)")
	fs.BoolVar(&o.NodePorts, "node-ports", false, fmt.Sprintf("expose Redis on NodePort %d and Kafka on %d (kind/k3d: a laptop kar run joins the cluster's mesh)", RedisNodePort, KafkaNodePort))
	fs.StringVar(&o.StorageClass, "storage-class", "", "storage class of the Redis and Kafka volumes (default: the cluster's default)")
	if name == "manifests" {
		fs.BoolVar(&o.Monitoring, "monitoring", false, "also print a PodMonitor (Prometheus Operator) scraping every injected sidecar's metrics port, and kar's Grafana dashboard in a ConfigMap labelled grafana_dashboard=1")
	}
	if code, ok := parseFlagsOnly(fs, name, args, stdout, stderr); !ok {
		return code
	}
	o.PullPolicy = corev1.PullPolicy(pullPolicy)
	o.RegistryPassword = os.Getenv("KAR_REGISTRY_PASSWORD")
	if err := o.Validate(); err != nil {
		fmt.Fprintf(stderr, "kar k8s %s: %v\n", name, err)
		return 2
	}
	if name == "manifests" {
		if err := Manifests(ctx, &o, stdout); err != nil {
			fmt.Fprintf(stderr, "kar k8s manifests: %v\n", err)
			return 1
		}
		return 0
	}
	c, err := NewClient(cf.kubeconfig, cf.context)
	if err != nil {
		fmt.Fprintf(stderr, "kar k8s deploy: %v\n", err)
		return 1
	}
	if err := Deploy(ctx, c, &o, stdout); err != nil {
		fmt.Fprintf(stderr, "kar k8s deploy: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "kar is deployed in namespace "+Namespace+"; enable more namespaces with kar k8s namespace enable NS")
	return 0
}
