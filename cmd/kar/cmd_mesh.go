package main

import (
	"context"
	"io"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	io.WriteString(stdout, "kar version "+version+"\n")
	return 0
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("run", stderr)
}
func runRest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("rest", stderr)
}
func runInvoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("invoke", stderr)
}
func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("get", stderr)
}
func runPurge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("purge", stderr)
}
func runDrain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("drain", stderr)
}
