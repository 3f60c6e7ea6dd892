package main

import (
	"context"
	"io"
)

func runK8s(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("k8s", stderr)
}
