package main

import (
	"context"
	"io"

	"github.com/kar-runtime/kar/k8s/install"
)

// runK8s is `kar k8s deploy|manifests|undeploy|namespace enable|disable`.
func runK8s(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return install.Main(ctx, args, stdout, stderr)
}
