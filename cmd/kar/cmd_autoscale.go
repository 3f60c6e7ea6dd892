package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/sidecar/config"
)

// runAutoscale is `kar autoscale [flags] -- CMD ARGS`: local replicas of
// a component, started and stopped on the mesh's load (autoscale.RunLocal).
func runAutoscale(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kar autoscale", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f autoscale.Flags
	f.Register(fs)
	runArgs := fs.String("run_args", "", "more flags for each replica's kar run, space-separated (e.g. \"-v info\")")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kar autoscale -app A (-service S | -actors T) [-min 0] [-max M] [-target K] [-poll 1s] [-scale_down_window 30s] [-cooldown 60s] -- CMD ARGS")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "kar autoscale: no component: give its command after --, e.g. kar autoscale -app A -service S -- node server.js")
		return exitUsage
	}
	if _, err := f.Validate(); err != nil {
		fmt.Fprintln(stderr, "kar autoscale:", err)
		return exitUsage
	}
	var b struct{ config.Backend }
	if _, err := config.Load(&b, "autoscale", nil, stderr); err != nil {
		fmt.Fprintln(stderr, "kar autoscale:", err)
		return exitUsage
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(stderr, "kar autoscale:", err)
		return 1
	}
	src, err := autoscale.Dial(ctx, b.Backend)
	if err != nil {
		fmt.Fprintln(stderr, "kar autoscale:", err)
		return 1
	}
	defer src.Close()
	l := &autoscale.Local{Kar: self, Run: strings.Fields(*runArgs), Cmd: fs.Args(), Out: stderr}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := autoscale.RunLocal(ctx, src, &f, l, log); err != nil {
		fmt.Fprintln(stderr, "kar autoscale:", err)
		return 1
	}
	return 0
}
