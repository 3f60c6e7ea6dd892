package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/kar-runtime/kar/entrypoint"
)

// runEntrypoint is the container entrypoint of the kar base images:
// with KAR_SIDECAR_IN_CONTAINER=true it runs the command under a sidecar
// (kar run), otherwise it becomes the command (the sidecar is then a
// separate container injected by Kubernetes).
func runEntrypoint(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintln(stdout, "Usage: kar entrypoint [--] CMD ARGS...\n\n"+
			"With KAR_SIDECAR_IN_CONTAINER=true, runs CMD as `kar run -app $KAR_APP $KAR_EXTRA_ARGS -- CMD ARGS...`\n"+
			"(every other setting from KAR_*, KAFKA_* and REDIS_* variables); otherwise execs CMD alone.")
		return 0
	}
	plan, err := entrypoint.NewPlan(os.LookupEnv, args)
	if err != nil {
		fmt.Fprintf(stderr, "kar entrypoint: %v\n", err)
		return exitUsage
	}
	if !plan.Sidecar {
		err := entrypoint.Exec(plan.Command)
		fmt.Fprintf(stderr, "kar entrypoint: %v\n", err)
		return 127
	}
	if err := entrypoint.Check(plan.RunArgs); err != nil {
		fmt.Fprintf(stderr, "kar entrypoint: %v\n", err)
		return exitUsage
	}
	return runRun(ctx, plan.RunArgs, stdout, stderr)
}
