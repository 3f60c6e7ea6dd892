package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/mesh"
	"github.com/kar-runtime/kar/sidecar/metrics"
)

// OneShot joins the mesh as a client-only member for one command (kar
// rest, kar invoke) and leaves when done.
type OneShot struct {
	Mesh     *mesh.Mesh
	backends *Backends
	// stopLoad ends the publication of this member's load; loadDone
	// closes once its record is deleted.
	stopLoad context.CancelFunc
	loadDone chan struct{}
}

// JoinOneShot validates cfg, connects and joins. Errors are one clear line.
func JoinOneShot(ctx context.Context, cfg *config.Client) (*OneShot, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	log, err := NewLogger(cfg.Verbose, io.Discard)
	if err != nil {
		return nil, err
	}
	store.RouteLogs(log)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	be, err := Connect(cctx, cfg.Backend, cfg.App)
	if err != nil {
		return nil, fmt.Errorf("%s", oneLine(err))
	}
	// The call's metrics are published as every sidecar's are: a call held
	// for a service with no replica is then part of the mesh's load, which
	// is what wakes an autoscaled service from zero (issue 14).
	met := metrics.New(cfg.App)
	m, err := mesh.New(mesh.Options{App: cfg.App, Client: true, LeaseTTL: cfg.LeaseTTL, MissingComponentTimeout: cfg.MissingComponentTimeout, Logger: log, Version: Version, Metrics: met}, be.Redis, be.Kafka)
	if err == nil {
		err = m.Join(cctx)
	}
	if err != nil {
		be.Close()
		return nil, fmt.Errorf("cannot join the mesh: %s", oneLine(err))
	}
	lctx, stop := context.WithCancel(context.Background())
	o := &OneShot{Mesh: m, backends: be, stopLoad: stop, loadDone: make(chan struct{})}
	go func() {
		defer close(o.loadDone)
		keys := store.NewKeys(cfg.App)
		met.PublishLoad(lctx, be.Redis, keys.Load(m.ID()), keys.LoadWake(), log)
	}()
	return o, nil
}

// Close leaves the mesh and closes the connections.
func (o *OneShot) Close() {
	o.stopLoad()
	<-o.loadDone
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	o.Mesh.Leave(ctx)
	cancel()
	o.backends.Close()
}

// Rest is `kar rest METHOD SERVICE PATH [BODY]`: one call, printed as KAR
// prints it (printAsKAR); with -o json the answer's body on stdout, and a
// non-2xx answer is an error (exit 1).
func Rest(ctx context.Context, cfg *config.Client, args []string, stdout, stderr io.Writer) int {
	if len(args) < 3 || len(args) > 4 {
		fmt.Fprintln(stderr, "kar rest: usage: kar rest -app A [-content_type T] METHOD SERVICE PATH [BODY]")
		return ExitConfig
	}
	method := strings.ToUpper(args[0])
	switch method {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead, http.MethodOptions:
	default:
		fmt.Fprintf(stderr, "kar rest: %q is not an HTTP method (get, post, put, patch, delete, head, options)\n", args[0])
		return ExitConfig
	}
	path := args[2]
	query := ""
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, query = path[:i], path[i+1:]
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	req := &mesh.Envelope{Service: args[1], Method: method, Path: path, Query: query}
	if len(args) == 4 {
		req.Body = []byte(args[3])
		req.Header = httpx.Fields{"Content-Type", cfg.ContentType}
	}
	o, err := JoinOneShot(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "kar rest:", err)
		return ExitConfig
	}
	defer o.Close()
	if cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.RequestTimeout)
		defer cancel()
	}
	resp, err := o.Mesh.Call(ctx, req)
	if err != nil {
		fmt.Fprintf(stderr, "kar rest: %s %s%s: %v\n", method, args[1], path, err)
		return ExitFailure
	}
	if !strings.EqualFold(cfg.Output, "json") {
		printAsKAR(resp, "", stdout, stderr)
		return 0
	}
	if resp.Status >= 300 || resp.Status < 200 && resp.Status != 0 {
		fmt.Fprintf(stderr, "kar rest: %s answered %d %s: %s\n", args[1], resp.Status, http.StatusText(resp.Status), strings.TrimSpace(string(resp.Body)))
		return ExitFailure
	}
	stdout.Write(resp.Body)
	if n := len(resp.Body); n > 0 && resp.Body[n-1] != '\n' {
		io.WriteString(stdout, "\n")
	}
	return 0
}

// printAsKAR prints the answer of kar rest (void == "") or kar invoke as
// KAR 1.3.10 does: a 200's body (for an actor method, "Method result: v"
// with v in Go's %v, or the exception on stderr), void's sentence for an
// actor's 204, any other status as two [STDERR] lines. KAR exits 0 after
// any of these; -o json keeps kar's own output and exit codes for scripts.
func printAsKAR(resp *mesh.Envelope, void string, stdout, stderr io.Writer) {
	status := resp.Status
	if status == 0 {
		status = http.StatusOK
	}
	switch {
	case status == http.StatusNoContent && void != "":
		fmt.Fprintln(stdout, void)
	case status != http.StatusOK:
		fmt.Fprintf(stderr, "[STDERR] HTTP status: %v\n[STDERR] %v\n", status, string(resp.Body))
	case void == "" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/kar+json"):
		fmt.Fprintln(stdout, string(resp.Body))
	default:
		var result struct {
			Value   any    `json:"value"`
			Error   bool   `json:"error"`
			Message string `json:"message"`
			Stack   string `json:"stack"`
		}
		if err := json.Unmarshal(resp.Body, &result); err != nil {
			fmt.Fprintf(stderr, "[STDERR] Internal error: malformed method result: %v\n", err)
		} else if result.Error {
			fmt.Fprintf(stderr, "[STDERR] Exception raised: %s\n[STDERR] Stacktrace: %v\n", result.Message, result.Stack)
		} else {
			fmt.Fprintf(stdout, "Method result: %v\n", result.Value)
		}
	}
}
