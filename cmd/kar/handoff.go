package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
)

// handOff runs command name in a companion binary: kar-cloud for the
// deployment commands (k8s, ce, knative, env), kar-dev for dev. What the
// runtime never needs lives there, so every sidecar maps none of it. The
// binary is taken from next to this kar binary, else from PATH, and
// replaces this process: stdin, signals and the exit code are its own.
func handOff(binary, name string) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		path := ""
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), binary); isFile(p) {
				path = p
			}
		}
		if path == "" {
			p, err := exec.LookPath(binary)
			if err != nil {
				fmt.Fprintf(stderr, "kar %s: needs the %s binary next to kar or on PATH (build both with `scripts/build.sh` in kar's repository)\n", name, binary)
				return exitUsage
			}
			path = p
		}
		argv := append([]string{"kar"}, append([]string{name}, args...)...)
		err := syscall.Exec(path, argv, os.Environ())
		fmt.Fprintf(stderr, "kar %s: cannot run %s: %v\n", name, path, err)
		return exitUsage
	}
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
