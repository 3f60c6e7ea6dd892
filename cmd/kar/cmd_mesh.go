package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/kar-runtime/kar/sidecar"
	"github.com/kar-runtime/kar/sidecar/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func runVersion(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	io.WriteString(stdout, "kar version "+version+"\n")
	return 0
}

// loadConfig reads a command's configuration; ok is false when the command
// must stop with code (help asked, or a clear error printed).
func loadConfig(cfg any, name string, args []string, stderr io.Writer) (rest []string, code int, ok bool) {
	rest, err := config.Load(cfg, name, args, stderr)
	if errors.Is(err, config.ErrHelp) {
		return nil, 0, false
	}
	if err != nil {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return nil, exitUsage, false
	}
	return rest, 0, true
}

func runRun(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg config.Run
	argv, code, ok := loadConfig(&cfg, "run", args, stderr)
	if !ok {
		return code
	}
	sidecar.Version = version
	return sidecar.Run(ctx, &cfg, argv, stdout, stderr)
}

func runRest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg config.Client
	rest, code, ok := loadConfig(&cfg, "rest", args, stderr)
	if !ok {
		return code
	}
	return sidecar.Rest(ctx, &cfg, rest, stdout, stderr)
}

func runInvoke(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg config.Client
	rest, code, ok := loadConfig(&cfg, "invoke", args, stderr)
	if !ok {
		return code
	}
	return sidecar.Invoke(ctx, &cfg, rest, stdout, stderr)
}

func runGet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg sidecar.Admin
	if _, code, ok := loadConfig(&cfg, "get", args, stderr); !ok {
		return code
	}
	return sidecar.Get(ctx, &cfg, stdout, stderr)
}

func runTop(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg sidecar.TopConfig
	if _, code, ok := loadConfig(&cfg, "top", args, stderr); !ok {
		return code
	}
	return sidecar.Top(ctx, &cfg, stdout, stderr)
}

func runPurge(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg sidecar.Admin
	if _, code, ok := loadConfig(&cfg, "purge", args, stderr); !ok {
		return code
	}
	return sidecar.Purge(ctx, &cfg, false, stdout, stderr)
}

func runDrain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg sidecar.Admin
	if _, code, ok := loadConfig(&cfg, "drain", args, stderr); !ok {
		return code
	}
	return sidecar.Purge(ctx, &cfg, true, stdout, stderr)
}

func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var cfg sidecar.MigrateConfig
	rest, code, ok := loadConfig(&cfg, "migrate", args, stderr)
	if !ok {
		return code
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "kar migrate: unexpected argument %q: usage: kar migrate -app A [-dry-run]\n", rest[0])
		return exitUsage
	}
	return sidecar.Migrate(ctx, &cfg, stdout, stderr)
}
