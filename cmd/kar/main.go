// Command kar is the kar runtime and CLI. main stays thin: each command is a
// function in this folder that hands its arguments to the package doing the work.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/internal/sysmon"
)

// exitUsage is the exit code for bad flags, configuration or arguments.
const exitUsage = 2

// command runs one kar subcommand and returns the process exit code.
type command struct {
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
	summary string
}

func commands() map[string]command {
	return map[string]command{
		"run":        {runRun, "run a component with a sidecar: kar run -app A [-service S] [-actors T] CMD ARGS..."},
		"rest":       {runRest, "call a service once: kar rest -app A METHOD SERVICE PATH [BODY]"},
		"invoke":     {runInvoke, "call an actor method once: kar invoke -app A TYPE ID METHOD [ARGS...]"},
		"get":        {runGet, "show actors, sidecars or the mesh's load: kar get -app A [-s actors|sidecars|load] [-t TYPE] [-i ID] [-mr] [-o json]"},
		"top":        {runTop, "the mesh's load, refreshed every second: kar top -app A [-n N] [-o json]"},
		"purge":      {runPurge, "remove all of an application's state and messages: kar purge -app A"},
		"drain":      {runDrain, "remove an application's pending messages: kar drain -app A"},
		"migrate":    {runMigrate, "copy an application's actor state, reminders and subscriptions from KAR 1.3.10's Redis layout: kar migrate -app A [-dry-run]"},
		"dev":        {handOff("kar-dev", "dev"), "serve a local Kafka-protocol broker and Redis for development"},
		"autoscale":  {runAutoscale, "run local replicas of a component, scaled on the mesh's load: kar autoscale -app A -service S -max M -- CMD ARGS..."},
		"version":    {runVersion, "print the version"},
		"probe":      {runProbe, "check or stop this Pod's sidecar (liveness probe, preStop hook): kar probe health|shutdown"},
		"entrypoint": {runEntrypoint, "container entrypoint: kar entrypoint [--] CMD ARGS..."},
		"k8s":        {handOff("kar-cloud", "k8s"), "install kar in Kubernetes: kar k8s deploy|manifests|undeploy|namespace|scaledobject"},
		"ce":         {handOff("kar-cloud", "ce"), "IBM Code Engine: kar ce project|app|autoscale ..."},
		"knative":    {handOff("kar-cloud", "knative"), "print a Knative Service: kar knative service ..."},
		"env":        {handOff("kar-cloud", "env"), "print backend variables: kar env ibmcloud CREDENTIAL"},
	}
}

func main() {
	args := os.Args[1:]
	if sidecarProcess(args) {
		// Here and not in runRun: dispatch runs in tests' processes too.
		if err := sysmon.Exec(); err != nil {
			fmt.Fprintf(os.Stderr, "kar: %v; going on without it\n", err)
		}
	}
	os.Exit(dispatch(args, os.Stdout, os.Stderr))
}

// sidecarProcess tells whether this process is to run a sidecar: kar run,
// or kar entrypoint with the sidecar in the container.
func sidecarProcess(args []string) bool {
	switch {
	case len(args) == 0:
		return false
	case args[0] == "run":
		return true
	case args[0] == "entrypoint":
		plan, err := entrypoint.NewPlan(os.LookupEnv, args[1:])
		return err == nil && plan.Sidecar
	}
	return false
}

func dispatch(args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(cmds, stdout)
		if len(args) == 0 {
			return exitUsage
		}
		return 0
	}
	c, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "kar: unknown command %q; run `kar help` for the list\n", args[0])
		return exitUsage
	}
	// The first SIGINT/SIGTERM cancels ctx so the command can drain; commands
	// that supervise a child forward the signal themselves.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return c.run(ctx, args[1:], stdout, stderr)
}

func usage(cmds map[string]command, w io.Writer) {
	fmt.Fprintln(w, "kar: the application mesh runtime (Kafka + Redis)")
	fmt.Fprintln(w, "\nUsage: kar COMMAND [flags] [args]\n\nCommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun `kar COMMAND -h` for a command's flags.")
}

func notYet(name string, stderr io.Writer) int {
	fmt.Fprintf(stderr, "kar %s: not available in this build\n", name)
	return exitUsage
}
