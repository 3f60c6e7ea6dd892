// Command kar-dev serves `kar dev`: a Kafka-protocol broker and a Redis on
// localhost for development (package devenv). Users run it as `kar dev`:
// kar hands the command to kar-dev, as it hands its deployment commands to
// kar-cloud, so that the runtime process (the sidecar beside every
// component) does not carry the broker and the embedded Redis. Their code
// and type data cost every sidecar 1.8 MiB of resident memory (issue 16).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

// exitUsage is the exit code for bad flags or arguments, as kar's.
const exitUsage = 2

func main() {
	args := os.Args[1:]
	// kar execs this binary as `kar dev ARGS...`; run directly, it takes
	// the same ARGS.
	if len(args) > 0 && args[0] == "dev" {
		args = args[1:]
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := runDev(ctx, args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
