package main

import (
	"context"
	"io"
)

func runEnv(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("env", stderr)
}
