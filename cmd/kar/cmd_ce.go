package main

import (
	"context"
	"io"
)

func runCE(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("ce", stderr)
}
