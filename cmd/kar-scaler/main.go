// Command kar-scaler is KEDA's external scaler over the mesh's own load
// (autoscale/externalscaler): a ScaledObject of type external scales a
// kar component from zero to N and back on the requests in flight and
// held for it. It is a binary of its own so that kar, the sidecar in every
// Pod, does not carry gRPC.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/kar-runtime/kar/autoscale/externalscaler"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := externalscaler.Main(ctx, os.Args[1:], os.Stderr, nil)
	stop()
	os.Exit(code)
}
