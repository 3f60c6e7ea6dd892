// Package probe is `kar probe`: the liveness probe and the preStop hook of
// the sidecar container kar-injector adds. kar serves its REST API on
// 127.0.0.1 only, which the kubelet's httpGet probes (sent to the Pod's IP)
// cannot reach, so the kubelet runs this command inside the container
// instead; it calls the sidecar on the loopback and exits 0 on success.
package probe

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// ExitFailed is the exit code when the sidecar did not answer as expected;
// ExitUsage when the command line is wrong.
const (
	ExitFailed = 1
	ExitUsage  = 2
)

// actions are what `kar probe` can do: the route it calls on the sidecar.
var actions = map[string]struct{ method, path string }{
	"health":   {http.MethodGet, "/kar/v1/system/health"},
	"shutdown": {http.MethodPost, "/kar/v1/system/shutdown"},
}

// Main runs `kar probe [-runtime_port P] [-timeout D] health|shutdown` and
// returns the exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kar probe", flag.ContinueOnError)
	fs.SetOutput(stderr)
	port := fs.Int("runtime_port", defaultPort(), "the sidecar's runtime port (default $KAR_RUNTIME_PORT, else 3500)")
	timeout := fs.Duration("timeout", 4*time.Second, "give up after this long (keep it below the probe's timeoutSeconds)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kar probe [-runtime_port P] [-timeout D] health|shutdown\n\n"+
			"Calls this Pod's kar sidecar on 127.0.0.1: health is GET /kar/v1/system/health (the liveness\n"+
			"probe kar-injector sets), shutdown is POST /kar/v1/system/shutdown (its preStop hook).\n"+
			"Exits 0 when the sidecar answers 2xx, 1 otherwise.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return ExitUsage
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	act, ok := actions[fs.Arg(0)]
	if !ok {
		fmt.Fprintf(stderr, "kar probe: unknown action %q: use health or shutdown\n", fs.Arg(0))
		return ExitUsage
	}
	if *port < 1 || *port > 65535 {
		fmt.Fprintf(stderr, "kar probe: -runtime_port %d is not a port number (1 to 65535)\n", *port)
		return ExitUsage
	}
	if *timeout <= 0 {
		fmt.Fprintf(stderr, "kar probe: -timeout %s must be positive\n", *timeout)
		return ExitUsage
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	status, body, err := call(ctx, *port, act.method, act.path)
	if err != nil {
		fmt.Fprintf(stderr, "kar probe %s: %v\n", fs.Arg(0), err)
		return ExitFailed
	}
	if status < 200 || status > 299 {
		fmt.Fprintf(stderr, "kar probe %s: %s %s answered %d: %s\n", fs.Arg(0), act.method, act.path, status, body)
		return ExitFailed
	}
	fmt.Fprintln(stdout, body)
	return 0
}

// defaultPort is $KAR_RUNTIME_PORT when it is a number, else kar's default.
func defaultPort() int {
	if p, err := strconv.Atoi(os.Getenv("KAR_RUNTIME_PORT")); err == nil {
		return p
	}
	return 3500
}

func call(ctx context.Context, port int, method, path string) (int, string, error) {
	url := "http://127.0.0.1:" + strconv.Itoa(port) + path
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return 0, "", fmt.Errorf("building the request: %w", err)
	}
	// One request and done: no connection to keep for later.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return 0, "", fmt.Errorf("reading the answer of %s %s: %w", method, url, err)
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}
