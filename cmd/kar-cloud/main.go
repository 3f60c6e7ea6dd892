// Command kar-cloud holds kar's deployment tooling: Kubernetes install and
// namespaces, IBM Code Engine, Knative manifests and IBM Cloud credentials.
// Users run it as `kar k8s ...`, `kar ce ...`, `kar knative ...` and
// `kar env ...`: kar hands these commands to kar-cloud, so that the
// runtime process (the sidecar in every Pod) does not carry the Kubernetes,
// Knative and IBM Cloud libraries: they cost it 35 MiB of memory at rest.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

const exitUsage = 2

type command struct {
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	summary string
}

func commands() map[string]command {
	return map[string]command{
		"k8s":     {runK8s, "install kar in Kubernetes: kar k8s deploy|manifests|undeploy|namespace|scaledobject"},
		"ce":      {runCE, "IBM Code Engine: kar ce project|app ..."},
		"knative": {runKnative, "print a Knative Service: kar knative service ..."},
		"env":     {runEnv, "print backend variables: kar env ibmcloud CREDENTIAL"},
	}
}

func main() {
	cmds := commands()
	args := os.Args[1:]
	if len(args) == 0 {
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintln(os.Stderr, "Usage: kar COMMAND ..., where kar-cloud serves the commands:")
		for _, n := range names {
			fmt.Fprintf(os.Stderr, "  %-8s %s\n", n, cmds[n].summary)
		}
		os.Exit(exitUsage)
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "kar: unknown command %q; run `kar help` for the list\n", args[0])
		os.Exit(exitUsage)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := c.run(ctx, args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
