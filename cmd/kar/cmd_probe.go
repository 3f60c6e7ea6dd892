package main

import (
	"context"
	"io"

	"github.com/kar-runtime/kar/k8s/probe"
)

// runProbe is the liveness probe and preStop hook of the sidecar container
// that kar-injector adds (it calls the sidecar on the loopback).
func runProbe(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return probe.Main(ctx, args, stdout, stderr)
}
