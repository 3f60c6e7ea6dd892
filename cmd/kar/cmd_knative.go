package main

import (
	"context"
	"io"
)

func runKnative(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("knative", stderr)
}
