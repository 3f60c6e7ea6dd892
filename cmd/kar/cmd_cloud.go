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

// cloudCommand hands a deployment command (k8s, ce, knative, env) to the
// kar-cloud binary: next to this kar binary, else on PATH. It replaces
// this process, so stdin, signals and the exit code are kar-cloud's.
func cloudCommand(name string) func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return func(ctx context.Context, args []string, stdout, stderr io.Writer) int {
		path := ""
		if self, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(self), "kar-cloud"); isFile(p) {
				path = p
			}
		}
		if path == "" {
			p, err := exec.LookPath("kar-cloud")
			if err != nil {
				fmt.Fprintf(stderr, "kar %s: needs the kar-cloud binary next to kar or on PATH (build both with `go build -o bin/ ./cmd/...`)\n", name)
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
