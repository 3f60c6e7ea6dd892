package main

import (
	"context"
	"io"
)

func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("dev", stderr)
}
