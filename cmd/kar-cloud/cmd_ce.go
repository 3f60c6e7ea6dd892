package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/codeengine"
	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/sidecar/config"
)

const ceUsage = `Usage:
  kar ce project create  [-project P] [-resource-group ID] [-nowait] [-timeout D]
  kar ce project enable  [-project P] SERVICE-CREDENTIAL
  kar ce project disable [-project P]
  kar ce project delete  [-project P]
  kar ce app run    [-project P] -app A -image I -name N [-service S] [-actors T1,T2] [-port P]
                    [-scale N | -min 0 -max M] [-env K=V]... [-externalize] [-registry-secret S]
                    [-h2c] [-nowait] [-timeout D] [-v LEVEL]
  kar ce app delete [-project P] -name N
  kar ce autoscale  [-project P] -app A -name N (-service S | -actors T) [-min 0] [-max M]
                    [-target K] [-poll 1s] [-scale_down_window 30s] [-cooldown 60s]

Provisions IBM Code Engine for kar (sidecar-in-container apps). kar ce autoscale
keeps an app's scale to the load of its service or actor type in the mesh (read
from the KAFKA_* and REDIS_* backend of the environment), until interrupted.
Environment: IBMCLOUD_API_KEY (required), IBMCLOUD_REGION (default us-south),
KAR_CE_PROJECT (default for -project); CODE_ENGINE_URL, CODE_ENGINE_AUTH_URL,
RESOURCE_CONTROLLER_URL, RESOURCE_CONTROLLER_AUTH_URL override the endpoints.
`

func runCE(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "autoscale" {
		return ceAutoscale(ctx, "kar ce autoscale", args[1:], stdout, stderr)
	}
	if len(args) < 2 {
		fmt.Fprint(stderr, ceUsage)
		if len(args) == 1 && isHelp(args[0]) {
			return 0
		}
		return exitUsage
	}
	name := "kar ce " + args[0] + " " + args[1]
	sub := map[string]func(context.Context, string, []string, io.Writer, io.Writer) int{
		"project create":  ceProjectCreate,
		"project enable":  ceProjectEnable,
		"project disable": ceProjectDisable,
		"project delete":  ceProjectDelete,
		"app run":         ceAppRun,
		"app delete":      ceAppDelete,
	}[args[0]+" "+args[1]]
	if sub == nil {
		fmt.Fprintf(stderr, "kar ce: unknown command %q\n\n%s", args[0]+" "+args[1], ceUsage)
		return exitUsage
	}
	return sub(ctx, name, args[2:], stdout, stderr)
}

// ceFlags is the flag set shared by the kar ce commands.
type ceFlags struct {
	fs      *flag.FlagSet
	project *string
	timeout *time.Duration
}

func newCEFlags(name string, stderr io.Writer) ceFlags {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprintf(stderr, "%s\nFlags of %s:\n", ceUsage, name); fs.PrintDefaults() }
	return ceFlags{
		fs:      fs,
		project: fs.String("project", os.Getenv("KAR_CE_PROJECT"), "Code Engine project name or ID (env KAR_CE_PROJECT)"),
		timeout: fs.Duration("timeout", 10*time.Minute, "how long to wait for the platform"),
	}
}

// parse parses args and checks the number of positionals; code is the
// exit code when ok is false.
func (f ceFlags) parse(args []string, positionals int, stderr io.Writer) (pos []string, code int, ok bool) {
	pos, err := parseInterleaved(f.fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, 0, false
		}
		return nil, exitUsage, false
	}
	if len(pos) != positionals {
		if positionals == 0 {
			fmt.Fprintf(stderr, "%s: unexpected argument %q\n", f.fs.Name(), pos[0])
		} else {
			fmt.Fprintf(stderr, "%s: give exactly %d argument(s)\n", f.fs.Name(), positionals)
		}
		return nil, exitUsage, false
	}
	if *f.project == "" {
		fmt.Fprintf(stderr, "%s: %v\n", f.fs.Name(), codeengine.ErrNoProject)
		return nil, exitUsage, false
	}
	if *f.timeout <= 0 {
		fmt.Fprintf(stderr, "%s: -timeout must be positive\n", f.fs.Name())
		return nil, exitUsage, false
	}
	return pos, 0, true
}

// connect makes the Code Engine client from the environment and the
// command's deadline (-timeout) from ctx.
func (f ceFlags) connect(ctx context.Context, stderr io.Writer, name string) (*codeengine.Client, context.Context, context.CancelFunc, int) {
	c, code := ceClient(stderr, name)
	if c == nil {
		return nil, ctx, func() {}, code
	}
	ctx, cancel := context.WithTimeout(ctx, *f.timeout)
	return c, ctx, cancel, 0
}

func fail(stderr io.Writer, name string, err error) int {
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	return 1
}

func ceProjectCreate(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f := newCEFlags(name, stderr)
	rg := f.fs.String("resource-group", "", "resource group ID (default: the account's default group)")
	nowait := f.fs.Bool("nowait", false, "do not wait for the project to become active")
	if _, code, ok := f.parse(args, 0, stderr); !ok {
		return code
	}
	c, ctx, cancel, code := f.connect(ctx, stderr, name)
	if c == nil {
		return code
	}
	defer cancel()
	p, err := c.CreateProject(ctx, *f.project, *rg, !*nowait)
	if err != nil {
		return fail(stderr, name, err)
	}
	fmt.Fprintf(stdout, "project %s (id %s) in %s: %s\n", p.Name, p.ID, c.Region(), p.Status)
	return 0
}

func ceProjectEnable(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f := newCEFlags(name, stderr)
	pos, code, ok := f.parse(args, 1, stderr)
	if !ok {
		return code
	}
	c, ctx, cancel, code := f.connect(ctx, stderr, name)
	if c == nil {
		return code
	}
	defer cancel()
	rc, err := c.RuntimeConfigFor(ctx, pos[0])
	if err != nil {
		return fail(stderr, name, err)
	}
	p, err := c.ActiveProject(ctx, *f.project)
	if err != nil {
		return fail(stderr, name, err)
	}
	created, err := c.PutGenericSecret(ctx, p, entrypoint.RuntimeConfigSecret, rc)
	if err != nil {
		return fail(stderr, name, err)
	}
	verb := "replaced"
	if created {
		verb = "created"
	}
	fmt.Fprintf(stdout, "project %s enabled for kar: secret %s %s (Redis %s, Kafka %d broker(s))\n",
		p.Name, entrypoint.RuntimeConfigSecret, verb, rc["REDIS_HOST"], countCommas(rc["KAFKA_BROKERS"])+1)
	return 0
}

func countCommas(s string) int {
	n := 0
	for _, r := range s {
		if r == ',' {
			n++
		}
	}
	return n
}

func ceProjectDisable(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f := newCEFlags(name, stderr)
	if _, code, ok := f.parse(args, 0, stderr); !ok {
		return code
	}
	c, ctx, cancel, code := f.connect(ctx, stderr, name)
	if c == nil {
		return code
	}
	defer cancel()
	p, err := c.FindProject(ctx, *f.project)
	if err != nil {
		return fail(stderr, name, err)
	}
	found, err := c.DeleteSecret(ctx, p, entrypoint.RuntimeConfigSecret)
	if err != nil {
		return fail(stderr, name, err)
	}
	if !found {
		fmt.Fprintf(stdout, "project %s was not enabled for kar (no secret %s)\n", p.Name, entrypoint.RuntimeConfigSecret)
		return 0
	}
	fmt.Fprintf(stdout, "project %s disabled for kar: secret %s deleted\n", p.Name, entrypoint.RuntimeConfigSecret)
	return 0
}

func ceProjectDelete(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f := newCEFlags(name, stderr)
	if _, code, ok := f.parse(args, 0, stderr); !ok {
		return code
	}
	c, ctx, cancel, code := f.connect(ctx, stderr, name)
	if c == nil {
		return code
	}
	defer cancel()
	p, err := c.DeleteProject(ctx, *f.project)
	if err != nil {
		return fail(stderr, name, err)
	}
	fmt.Fprintf(stdout, "project %s (id %s) deleted (restorable for 7 days)\n", p.Name, p.ID)
	return 0
}

func ceAppRun(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f := newCEFlags(name, stderr)
	var app entrypoint.App
	app.Flags(f.fs)
	nowait := f.fs.Bool("nowait", false, "do not wait for the app to become ready")
	if _, code, ok := f.parse(args, 0, stderr); !ok {
		return code
	}
	if err := app.Validate(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	c, ctx, cancel, code := f.connect(ctx, stderr, name)
	if c == nil {
		return code
	}
	defer cancel()
	p, err := c.ActiveProject(ctx, *f.project)
	if err != nil {
		return fail(stderr, name, err)
	}
	a, err := c.RunApp(ctx, p, app, !*nowait)
	if err != nil {
		return fail(stderr, name, err)
	}
	instances := fmt.Sprintf("%d instance(s)", app.Scale)
	if app.Autoscaled() {
		instances = fmt.Sprintf("%d to %d instances, autoscaled: run kar ce autoscale -project %s -app %s -name %s %s -min %d -max %d",
			app.Min, app.Max, p.Name, app.App, app.Name, scaledOn(app.Component), app.Min, app.Max)
	}
	fmt.Fprintf(stdout, "app %s in project %s: %s, %s, internal endpoint %s", a.Name, p.Name, a.Status, instances, a.EndpointInternal)
	if a.Endpoint != "" {
		fmt.Fprintf(stdout, ", public endpoint %s", a.Endpoint)
	}
	fmt.Fprintln(stdout)
	return 0
}

// scaledOn is the flag naming what an autoscaled component scales on:
// its service, else its first actor type.
func scaledOn(c entrypoint.Component) string {
	if c.Service != "" || len(c.Actors) == 0 {
		return "-service " + c.Service
	}
	return "-actors " + c.Actors[0]
}

func ceAppDelete(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f := newCEFlags(name, stderr)
	appName := f.fs.String("name", "", "name of the app (required)")
	if _, code, ok := f.parse(args, 0, stderr); !ok {
		return code
	}
	if *appName == "" {
		fmt.Fprintf(stderr, "%s: no -name: give the app's name\n", name)
		return exitUsage
	}
	c, ctx, cancel, code := f.connect(ctx, stderr, name)
	if c == nil {
		return code
	}
	defer cancel()
	p, err := c.FindProject(ctx, *f.project)
	if err != nil {
		return fail(stderr, name, err)
	}
	found, err := c.DeleteApp(ctx, p, *appName)
	if err != nil {
		return fail(stderr, name, err)
	}
	if !found {
		fmt.Fprintf(stdout, "no app %s in project %s\n", *appName, p.Name)
		return 0
	}
	fmt.Fprintf(stdout, "app %s deleted from project %s\n", *appName, p.Name)
	return 0
}

func ceAutoscale(ctx context.Context, name string, args []string, stdout, stderr io.Writer) int {
	f := newCEFlags(name, stderr)
	var af autoscale.Flags
	af.Register(f.fs)
	appName := f.fs.String("name", "", "the Code Engine app to scale (required)")
	if _, code, ok := f.parse(args, 0, stderr); !ok {
		return code
	}
	t, err := af.Validate()
	if err == nil && *appName == "" {
		err = errors.New("no -name: give the Code Engine app to scale")
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	var b struct{ config.Backend }
	if _, err := config.Load(&b, "ce autoscale", nil, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	s, err := autoscale.NewScaler(af.Policy)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitUsage
	}
	c, code := ceClient(stderr, name)
	if c == nil {
		return code
	}
	pctx, cancel := context.WithTimeout(ctx, *f.timeout)
	p, err := c.FindProject(pctx, *f.project)
	cancel()
	if err != nil {
		return fail(stderr, name, err)
	}
	src, err := autoscale.Dial(ctx, b.Backend)
	if err != nil {
		return fail(stderr, name, err)
	}
	defer src.Close()
	fmt.Fprintf(stdout, "scaling app %s in project %s on the load of %s %s (%d to %d, %d in flight per instance)\n",
		*appName, p.Name, t.Type, t.Name, af.Min, af.Max, af.TargetInFlight)
	log := slog.New(slog.NewTextHandler(stderr, nil))
	if err := c.Autoscale(ctx, p, *appName, src, t, s, af.Poll, log); err != nil && !errors.Is(err, context.Canceled) {
		return fail(stderr, name, err)
	}
	return 0
}
