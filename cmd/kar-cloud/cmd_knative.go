package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/knative"
)

const knativeUsage = `Usage: kar knative service -app A -image I -name N [-service S] [-actors T1,T2] [-port P]
         [-scale N | -min 0 -max M [-target K] [-poll 1s] [-scale_down_window 30s] [-cooldown 60s] [-scaler ADDR]]
         [-env K=V]... [-externalize] [-registry-secret S] [-h2c] [-v LEVEL] [-namespace NS]

Prints a serving.knative.dev/v1 Service running the component under kar
(sidecar-in-container) for kubectl apply -f -: at a fixed -scale, or with
-max scaled on the mesh's load through KEDA (Knative's KEDA extension,
autoscaler-keda, with kar-scaler's trigger; see docs/autoscaling.md).
`

func runKnative(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "service" {
		fmt.Fprint(stderr, knativeUsage)
		if len(args) > 0 && isHelp(args[0]) {
			return 0
		}
		return exitUsage
	}
	fs := flag.NewFlagSet("kar knative service", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, knativeUsage+"\nFlags:\n"); fs.PrintDefaults() }
	var app entrypoint.App
	app.Flags(fs)
	ns := fs.String("namespace", "", "namespace of the Service (default: the one kubectl applies to)")
	var sc knative.Scaling
	autoscale.RegisterKnobs(fs, &sc.TargetInFlight, &sc.Poll, &sc.ScaleDownWindow, &sc.Cooldown)
	fs.StringVar(&sc.Scaler, "scaler", knative.DefaultScalerAddress, "with -max: host:port where KEDA calls kar-scaler")
	// Accepted so the flags of kar-ce-run.sh work unchanged; kubectl waits.
	fs.Bool("nowait", false, "ignored (kar-ce-run.sh's flag; use kubectl wait)")
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kar knative service: unexpected argument %q (all settings are flags)\n", fs.Arg(0))
		return exitUsage
	}
	svc, err := knative.ScaledService(ctx, app, *ns, sc)
	if err != nil {
		fmt.Fprintf(stderr, "kar knative service: %v\n", err)
		return exitUsage
	}
	b, err := knative.YAML(svc)
	if err != nil {
		fmt.Fprintf(stderr, "kar knative service: %v\n", err)
		return 1
	}
	stdout.Write(b)
	return 0
}

func isHelp(s string) bool { return s == "-h" || s == "-help" || s == "--help" || s == "help" }
