package main

import (
	"context"
	"io"
)

func runEntrypoint(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return notYet("entrypoint", stderr)
}
