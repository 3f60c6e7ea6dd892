package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/kar-runtime/kar/codeengine"
)

const envUsage = `Usage: kar env ibmcloud SERVICE-CREDENTIAL

Prints export lines for the KAFKA_* and REDIS_* variables of the Event
Streams and Databases for Redis instances holding a service credential of
that name, so this machine joins the same mesh as the cloud components:

  eval "$(kar env ibmcloud kar-creds)"     or     source scripts/kar-env-ibmcloud.sh kar-creds

Environment: IBMCLOUD_API_KEY (required); RESOURCE_CONTROLLER_URL and
RESOURCE_CONTROLLER_AUTH_URL override the endpoints.
`

func runEnv(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "ibmcloud" {
		fmt.Fprint(stderr, envUsage)
		if len(args) > 0 && isHelp(args[0]) {
			return 0
		}
		return exitUsage
	}
	fs := flag.NewFlagSet("kar env ibmcloud", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, envUsage) }
	pos, err := parseInterleaved(fs, args[1:])
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if len(pos) != 1 || pos[0] == "" {
		fmt.Fprintf(stderr, "kar env ibmcloud: give exactly one service credential name\n\n%s", envUsage)
		return exitUsage
	}
	c, code := ceClient(stderr, "kar env ibmcloud")
	if c == nil {
		return code
	}
	rc, err := c.RuntimeConfigFor(ctx, pos[0])
	if err != nil {
		fmt.Fprintf(stderr, "kar env ibmcloud: %v\n", err)
		return 1
	}
	if err := codeengine.WriteExports(stdout, rc); err != nil {
		fmt.Fprintf(stderr, "kar env ibmcloud: %v\n", err)
		return 1
	}
	return 0
}

// parseInterleaved parses flags that may come before or after the
// positional arguments, and returns the positionals.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if rest[0] == "--" {
			return append(pos, rest[1:]...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// ceClient builds the IBM Cloud client from the environment, or reports
// why it cannot.
func ceClient(stderr io.Writer, name string) (*codeengine.Client, int) {
	cfg, err := codeengine.FromEnv()
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return nil, exitUsage
	}
	cfg.Progress = func(format string, args ...any) {
		fmt.Fprintf(stderr, "%s: %s\n", name, fmt.Sprintf(format, args...))
	}
	c, err := codeengine.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return nil, exitUsage
	}
	return c, 0
}
