// Package sidecar wires the kar runtime process: configuration, the
// backends, the mesh, the REST API and the launched component.
package sidecar

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/actorstate"
	"github.com/kar-runtime/kar/sidecar/api"
	"github.com/kar-runtime/kar/sidecar/appclient"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/events"
	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/launcher"
	"github.com/kar-runtime/kar/sidecar/mesh"
	"github.com/kar-runtime/kar/sidecar/metrics"
	"github.com/kar-runtime/kar/sidecar/reminders"
	"github.com/kar-runtime/kar/sidecar/tracing"
	"github.com/redis/go-redis/v9"
)

// Exit codes of kar itself (a component's own code is passed through).
const (
	ExitConfig  = 2 // bad flags or configuration, backends unreachable
	ExitFailure = 1
)

// shutdownGrace is how long POST /kar/v1/system/shutdown lets the
// component exit on its own before it is sent SIGTERM.
const shutdownGrace = 2 * time.Second

// drainTimeout bounds how long a stopping sidecar waits for its component
// to finish the requests it runs before the component is signalled: under
// the 30 s Kubernetes and Knative give a container to stop.
const drainTimeout = 20 * time.Second

// Version is reported in the sidecar's registration.
var Version = "dev"

// NewLogger makes the sidecar's logger for a -v level.
func NewLogger(level string, w io.Writer) (*slog.Logger, error) {
	l, err := config.ParseLevel(level)
	if err != nil {
		return nil, err
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// Backends are the connections every mesh member needs.
type Backends struct {
	Redis redis.UniversalClient
	Kafka *kafka.Client
}

// Connect reaches Redis and Kafka at once (each is a round trip or two;
// doing them side by side halves a one-shot command's start).
// Before its first write of the application's keys it moves keys of kar's
// previous layout (store.EnsureLayout).
func Connect(ctx context.Context, cfg config.Backend, app string) (*Backends, error) {
	return connect(ctx, cfg, app, true)
}

// connect is Connect, without touching the key layout when layout is false
// (a command that only reads: kar migrate -dry-run).
func connect(ctx context.Context, cfg config.Backend, app string, layout bool) (*Backends, error) {
	type rres struct {
		c   redis.UniversalClient
		err error
	}
	rc := make(chan rres, 1)
	go func() {
		c, err := store.Connect(ctx, cfg)
		if err == nil && layout {
			// An application last run by a kar before the present key
			// scheme has its keys moved once (one GET otherwise).
			_, err = store.EnsureLayout(ctx, c, store.NewKeys(app))
		}
		rc <- rres{c, err}
	}()
	kc, kerr := kafka.Connect(ctx, cfg, app)
	r := <-rc
	if r.err != nil || kerr != nil {
		if r.c != nil {
			r.c.Close()
		}
		if kc != nil {
			kc.Close()
		}
		return nil, errors.Join(r.err, kerr)
	}
	return &Backends{Redis: r.c, Kafka: kc}, nil
}

// Close closes both connections.
func (b *Backends) Close() {
	b.Kafka.Close()
	b.Redis.Close()
}

// Run is `kar run`: it joins the mesh, serves the REST API, launches argv
// (if any) as the component and returns the exit code: the component's,
// or ExitConfig when kar could not start.
func Run(ctx context.Context, cfg *config.Run, argv []string, stdout, stderr io.Writer) int {
	log, err := NewLogger(cfg.Verbose, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "kar run:", err)
		return ExitConfig
	}
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(stderr, "kar run:", err)
		return ExitConfig
	}
	store.RouteLogs(log)
	defer tuneRuntime(ctx, cfg, log)()
	// Signals are forwarded to the component as they come.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	ln, metricsLn, err := listen(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "kar run:", err)
		return ExitConfig
	}
	if metricsLn != nil {
		defer metricsLn.Close()
	}
	runtimePort := ln.Addr().(*net.TCPAddr).Port

	// The component starts before the sidecar connects and joins: a new
	// replica's first request waits for both, and the component is most
	// often the slower. Calls it makes early wait in the REST API's
	// backlog, then for the join.
	proc, err := launch(argv, cfg, runtimePort, stdout, stderr)
	if err != nil {
		ln.Close()
		fmt.Fprintln(stderr, "kar run:", err)
		return ExitConfig
	}
	app := appclient.New(cfg.AppPort, cfg.H2C)
	var listening <-chan error
	if cfg.Service != "" || len(cfg.Actors) > 0 {
		listening = whenListening(app, cfg.AppReadyTimeout)
	}

	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	be, err := Connect(cctx, cfg.Backend, cfg.App)
	cancel()
	if err != nil {
		ln.Close()
		return abandon(ctx, proc, sigs, stderr, "kar run:", err)
	}
	defer be.Close()
	// One pub/sub connection for the mesh's, the reminders' and the
	// events' notices.
	notices := store.NewNotices(be.Redis)
	defer notices.Close()
	// One registry per sidecar: several sidecars may share a process (tests).
	met := metrics.New(cfg.App)
	be.Redis.AddHook(met.RedisHook())
	if metricsLn != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", met.Handler())
		msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		go msrv.Serve(metricsLn)
		defer msrv.Close()
	}

	host := cfg.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	over := newStartOver()
	// The tracer is made before the mesh (its handler uses it) and named
	// after it once it exists.
	var tr *tracing.Tracer
	m, err := mesh.New(mesh.Options{
		App: cfg.App, Host: host, Port: runtimePort, Version: Version,
		LeaseTTL: cfg.LeaseTTL, MissingComponentTimeout: cfg.MissingComponentTimeout,
		ActorBusyTimeout: cfg.ActorBusyTimeout, ActorCollectorInterval: cfg.ActorCollectorInterval,
		DeliveryAttempts: cfg.DeliveryAttempts,
		Handler:          serviceHandler(app, met, &tr, over), Logger: log, Metrics: met, Notices: notices,
	}, be.Redis, be.Kafka)
	if err != nil {
		ln.Close()
		return abandon(ctx, proc, sigs, stderr, "kar run:", err)
	}
	if tr, err = tracing.New(ctx, cfg.App, m.ID(), Version); err != nil {
		// Traces are an aid: a sidecar without them still serves.
		log.Warn("tracing off", "err", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := tr.Shutdown(sctx); err != nil {
			log.Warn("cannot export the last spans", "err", err)
		}
	}()

	ready := make(chan struct{})
	shutdown := make(chan struct{}, 1)
	keys := store.NewKeys(cfg.App)
	// Firing a reminder is one produce to Kafka: a short claim lease lets
	// another sidecar fire a reminder soon when the one that claimed it dies.
	rems := reminders.New(be.Redis, keys, reminders.Options{Logger: log, Lease: 5 * time.Second, IdlePoll: cfg.ActorReminderInterval, LateAfter: cfg.ActorReminderDelay,
		Cancelled: met.RemindersCancelled, Notices: notices})
	evs := events.New(events.Options{
		App: cfg.App, Redis: be.Redis, Kafka: be.Kafka, Keys: keys, Logger: log,
		SidecarID: m.ID(), Deliver: deliverEvent(m, met, tr), MaxAttempts: cfg.EventAttempts,
		DeadLettered: met.EventDeadLettered, Notices: notices,
	})
	registerGauges(met, m, be.Redis, keys)
	srv := &api.Server{
		Mesh: m, Log: log, RequestTimeout: cfg.CallTimeout(), BodyTimeout: cfg.BodyTimeout, Ready: ready, Redis: be.Redis, Keys: keys,
		Metrics: met, Tracer: tr,
		// The routes of Extra below are all off the call routes.
		DirectCallRoutes: true,
		ActorCleanup: func(ctx context.Context, typ, id string) error {
			if err := actorstate.DeleteAll(ctx, be.Redis, keys, typ, id); err != nil {
				return err
			}
			_, err := rems.CancelAll(ctx, reminders.Actor{Type: typ, ID: id})
			return err
		},
		Extra: func(mux *http.ServeMux) {
			actorstate.Register(mux, be.Redis, keys)
			reminders.Register(mux, rems)
			evs.Register(mux)
		},
		Shutdown: func() {
			select {
			case shutdown <- struct{}{}:
			default:
			}
		},
	}
	go func() {
		if err := srv.Serve(ln); err != nil {
			log.Error("REST API stopped", "err", err)
		}
	}()

	jctx, jcancel := context.WithTimeout(ctx, 30*time.Second)
	err = m.Join(jctx)
	jcancel()
	if err != nil {
		srv.Close(context.Background())
		return abandon(ctx, proc, sigs, stderr, "kar run: cannot join the mesh:", err)
	}
	close(ready)
	go over.dropPagesWhenOver(ctx, log)
	stopLoops := runLoops(m, rems, evs, met, be.Redis, keys, tr, log)
	if cfg.Service != "" || len(cfg.Actors) > 0 {
		go announceWhenListening(m, listening, cfg, log)
	}
	code := waitForExit(m, proc, sigs, shutdown, log)
	stopLoops()
	lctx, lcancel := context.WithTimeout(context.Background(), 30*time.Second)
	m.Leave(lctx)
	srv.Close(lctx)
	lcancel()
	return code
}

// tuneRuntime sets Go's runtime for a sidecar (memory.go, threads.go) and
// serves pprof when KAR_PPROF_ADDR asks for it; stop ends what it started.
func tuneRuntime(ctx context.Context, cfg *config.Run, log *slog.Logger) (stop func()) {
	ctx, stop = context.WithCancel(ctx)
	if tuneMemory(cfg.MemoryLimit) {
		go followLiveHeap(ctx, config.DefaultMemoryLimit, time.Second)
	}
	if os.Getenv("GOMAXPROCS") == "" {
		go followLoad(ctx, runtime.GOMAXPROCS(0), 2*time.Second)
	}
	if addr := os.Getenv("KAR_PPROF_ADDR"); addr != "" {
		// Profiling on demand (net/http/pprof registers on the default mux).
		go func() { log.Warn("pprof server stopped", "err", http.ListenAndServe(addr, nil)) }()
	} else {
		// Nobody can ask for a heap profile: the runtime's record of
		// sampled allocations (a 1.4 MB hash table and a bucket per
		// call stack) would only hold memory.
		runtime.MemProfileRate = 0
	}
	return stop
}

// listen opens the REST API's port on the loopback and, when asked for,
// the metrics port.
func listen(cfg *config.Run) (apiLn, metricsLn net.Listener, err error) {
	if apiLn, err = net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(cfg.RuntimePort)); err != nil {
		return nil, nil, fmt.Errorf("cannot listen on runtime port %d: %v", cfg.RuntimePort, err)
	}
	if cfg.MetricsPort > 0 {
		// The REST API has no authentication, so it stays on the
		// loopback; a Prometheus in the cluster reaches the Pod's IP, so
		// /metrics (read-only: names and counts) may be served there too.
		if metricsLn, err = net.Listen("tcp", ":"+strconv.Itoa(cfg.MetricsPort)); err != nil {
			apiLn.Close()
			return nil, nil, fmt.Errorf("cannot listen on metrics port %d: %v", cfg.MetricsPort, err)
		}
	}
	return apiLn, metricsLn, nil
}

// runLoops runs what every sidecar does besides serving calls, once it has
// joined, until stop (which waits for them):
//   - it fires due reminders: the scheduler claims each one in Redis, so
//     exactly one sidecar fires it, and the mesh routes the call;
//   - it runs event subscriptions: each one is leased to one sidecar at a
//     time, which delivers its events in order;
//   - it publishes its load, for the autoscaler.
func runLoops(m *mesh.Mesh, rems *reminders.Store, evs *events.Service, met *metrics.Metrics, rdb redis.UniversalClient, keys store.Keys, tr *tracing.Tracer, log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := rems.Run(ctx, fireReminder(m, met, tr)); err != nil {
			log.Error("reminders stopped", "err", err)
		}
	})
	wg.Go(func() {
		if err := evs.Run(ctx); err != nil {
			log.Error("event subscriptions stopped", "err", err)
		}
	})
	wg.Go(func() { met.PublishLoad(ctx, rdb, keys.Load(m.ID()), keys.LoadWake(), log) })
	return func() {
		cancel()
		wg.Wait()
	}
}

// launch starts argv, if any, as the component, with the environment
// kar-sdk reads.
func launch(argv []string, cfg *config.Run, runtimePort int, stdout, stderr io.Writer) (*launcher.Process, error) {
	if len(argv) == 0 {
		return nil, nil
	}
	env := []string{"KAR_RUNTIME_PORT=" + strconv.Itoa(runtimePort), "KAR_APP_PORT=" + strconv.Itoa(cfg.AppPort), "KAR_APP=" + cfg.App,
		"KAR_REQUEST_TIMEOUT=" + requestTimeoutMs(cfg.CallTimeout())}
	return launcher.Start(argv, env, stdout, stderr)
}

// abandonGrace is how long a component has to exit after SIGTERM when kar
// cannot go on starting, before kar kills it: kar then exits, and a
// component that ignored the signal would outlive it or hold it.
const abandonGrace = 5 * time.Second

// abandon ends a start that failed once the component was launched: it
// stops the component and returns ExitConfig, having said why. When the
// start was interrupted (Ctrl-C), it says nothing and returns the
// component's exit code, as kar does when stopped after the join.
func abandon(ctx context.Context, proc *launcher.Process, sigs <-chan os.Signal, stderr io.Writer, prefix string, err error) int {
	interrupted := ctx.Err() != nil
	if !interrupted {
		fmt.Fprintln(stderr, prefix, oneLine(err))
	}
	code := 0
	if proc != nil {
		forwardPending(sigs, proc)
		proc.Signal(syscall.SIGTERM)
		select {
		case <-proc.Done():
		case <-time.After(abandonGrace):
			fmt.Fprintf(stderr, "kar run: the component did not exit %v after SIGTERM; killing it\n", abandonGrace)
			proc.Signal(syscall.SIGKILL)
			<-proc.Done()
		}
		code = proc.ExitCode()
	}
	if interrupted {
		return code
	}
	return ExitConfig
}

// whenListening waits, from the component's start and beside the join,
// until the component accepts connections (or timeout passes), and then
// says so on the channel it returns.
func whenListening(app *appclient.Client, timeout time.Duration) <-chan error {
	listening := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		listening <- app.WaitListening(ctx)
	}()
	return listening
}

// announceWhenListening announces the sidecar's service and actor types
// once its component listens, so that no request routed here waits on a
// component still starting.
func announceWhenListening(m *mesh.Mesh, listening <-chan error, cfg *config.Run, log *slog.Logger) {
	if err := <-listening; err != nil {
		log.Warn("component not listening yet; joining anyway", "port", cfg.AppPort)
	}
	var services []string
	if cfg.Service != "" {
		services = []string{cfg.Service}
	}
	if err := m.Announce(context.Background(), services, cfg.Actors); err != nil {
		log.Error("cannot announce services", "err", err)
	}
}

// waitForExit waits for the component to exit, or, without one, for a
// signal or a shutdown request, and returns the exit code. The first
// signal drains the sidecar and then reaches the component; a second one
// reaches it at once. A shutdown the component asked for (kar-sdk's
// sys.shutdown) drains the sidecar and leaves the component shutdownGrace
// to exit by itself before SIGTERM; asked again while stopping, kar
// leaves at once.
func waitForExit(m *mesh.Mesh, proc *launcher.Process, sigs <-chan os.Signal, shutdown <-chan struct{}, log *slog.Logger) int {
	if proc == nil {
		select {
		case <-sigs:
		case <-shutdown:
		}
		return 0
	}
	stopping := false
	for {
		select {
		case <-proc.Done():
			forwardPending(sigs, proc)
			awaitOwnCopy(sigs, proc)
			return proc.ExitCode()
		case sig := <-sigs:
			if stopping {
				proc.Signal(sig)
				continue
			}
			stopping = true
			proc.Intend(sig)
			go func() {
				drain(m, log)
				proc.Signal(sig)
			}()
		case <-shutdown:
			if stopping {
				return 0 // asked again while stopping: kar leaves now
			}
			stopping = true
			go func() {
				grace := time.After(shutdownGrace)
				drain(m, log)
				select {
				case <-proc.Done():
				case <-grace:
					proc.Signal(syscall.SIGTERM)
				}
			}()
		}
	}
}

// ownCopyWait is how long kar waits for its own copy of the signal that
// ended its component (awaitOwnCopy).
const ownCopyWait = 500 * time.Millisecond

// awaitOwnCopy: a Ctrl-C in a terminal signals kar and the component
// together, and the component can be gone, and kar told so, before kar's
// own copy of the signal has come through the runtime's signal relay (a
// loaded machine delays it). When the component ended from a signal kar
// listens for and has not had, kar waits a moment for it, so that the
// exit code counts it as one the component was asked to end from.
func awaitOwnCopy(sigs <-chan os.Signal, proc *launcher.Process) {
	s, ok := proc.Signaled()
	if !ok || s != syscall.SIGINT && s != syscall.SIGTERM || proc.ExitCode() == 0 {
		return
	}
	select {
	case sig := <-sigs:
		proc.Intend(sig)
	case <-time.After(ownCopyWait):
	}
}

// forwardPending forwards the signals kar received but has not forwarded
// yet, so the exit code knows the component ended from one of them.
func forwardPending(sigs <-chan os.Signal, proc *launcher.Process) {
	for {
		select {
		case sig := <-sigs:
			proc.Signal(sig)
		default:
			return
		}
	}
}

// drain stops routing here and waits, at most drainTimeout, until the
// component runs no request and hosts no actor instance, so that stopping
// it ends no request midway (a request ended midway runs again elsewhere).
func drain(m *mesh.Mesh, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	if err := m.Withdraw(ctx); err != nil {
		log.Warn("cannot withdraw from the mesh", "err", err)
	}
	if err := m.Drain(ctx); err != nil {
		log.Warn("stopping the component before it finished its requests", "err", err)
	}
}

// registerGauges registers the metrics read when scraped: KAR's count of
// active reminders (the application's, from Redis) and the mesh's count of
// poison requests.
func registerGauges(met *metrics.Metrics, m *mesh.Mesh, rdb redis.UniversalClient, keys store.Keys) {
	met.GaugeFunc("kar_actors_active_reminders_gauge", "Reminders scheduled in the application.", func() float64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, err := rdb.ZCard(ctx, keys.ReminderSchedule()).Result()
		if err != nil {
			return math.NaN()
		}
		return float64(n)
	})
	met.CounterFunc("kar_requests_poisoned_total", "Requests given up after their component failed them -delivery_attempts times, or their hosts died running them that often.",
		func() float64 { return float64(m.Poisoned()) })
}

// fireReminder delivers a due reminder as an async actor call; it returns
// once the call is durable in Kafka.
func fireReminder(m *mesh.Mesh, met *metrics.Metrics, tr *tracing.Tracer) reminders.FireFunc {
	return func(ctx context.Context, r reminders.Reminder) error {
		met.ReminderFired(time.Since(r.TargetTime))
		body := []byte(r.EncodedData)
		switch {
		case len(body) == 0:
			body = []byte("[]")
		case body[0] != '[':
			body = append(append([]byte("["), body...), ']')
		}
		path := r.Path
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		h := httpx.Fields{"Content-Type", "application/kar+json"}
		span := tr.Start(nil, &h, tracing.Send, "actor", r.Actor.Type, http.MethodPost, path)
		err := m.Tell(ctx, &mesh.Envelope{
			ActorType: r.Actor.Type, ActorID: r.Actor.ID, Method: http.MethodPost, Path: path,
			Header: h, Body: body,
		})
		status := http.StatusAccepted
		if err != nil {
			status = metrics.NoResponse
		}
		span.End(status, err)
		met.Sent(metrics.Reminder, true, r.Actor.Type, status, 0)
		return err
	}
}

// deliverEvent delivers one event to an actor method as a synchronous
// call: the subscription's next event waits for this one's method to return.
func deliverEvent(m *mesh.Mesh, met *metrics.Metrics, tr *tracing.Tracer) events.DeliverFunc {
	return func(ctx context.Context, actorType, actorID, path, contentType string, body []byte) error {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		start := time.Now()
		h := httpx.Fields{"Content-Type", contentType}
		// The delivery continues the publisher's trace, when the event
		// carries one (CloudEvents' distributed tracing extension).
		span := tr.Start(events.TraceContext(ctx), &h, tracing.Call, "actor", actorType, http.MethodPost, path)
		resp, err := m.Call(ctx, &mesh.Envelope{
			ActorType: actorType, ActorID: actorID, Method: http.MethodPost, Path: path,
			Header: h, Body: body,
		})
		if err != nil {
			span.End(0, err)
			met.Sent(metrics.Event, true, actorType, metrics.NoResponse, time.Since(start))
			met.EventDelivery(metrics.EventFailed)
			return err
		}
		span.End(resp.Status, nil)
		met.Sent(metrics.Event, true, actorType, resp.Status, time.Since(start))
		if resp.Status < 300 {
			met.EventDelivery(metrics.EventDelivered)
			return nil
		}
		err = fmt.Errorf("actor %s/%s %s answered %d: %s", actorType, actorID, path, resp.Status, strings.TrimSpace(string(resp.Body)))
		if resp.Status >= 400 && resp.Status < 500 && resp.Status != http.StatusRequestTimeout && resp.Status != http.StatusTooManyRequests {
			// No retry makes a missing method or a rejected event succeed:
			// the event goes to the dead-letter topic at once.
			met.EventDelivery(metrics.EventRejected)
			return events.Rejected(err)
		}
		met.EventDelivery(metrics.EventFailed)
		return err
	}
}

// serviceHandler delivers a request from the mesh to the component, and
// times the service calls and actor method calls (not activations) under
// KAR's path label.
func serviceHandler(app *appclient.Client, met *metrics.Metrics, trp **tracing.Tracer, over *startOver) mesh.Handler {
	return func(ctx context.Context, req *mesh.Envelope) (*mesh.Envelope, error) {
		var running *metrics.Target
		header := req.Header
		var span tracing.Span
		if req.ActorType != "" || req.Service != "" {
			running = met.Begin(req.ActorType != "", req.TargetName())
			if tr := *trp; tr != nil {
				// The component's request continues the caller's span in
				// a span of this sidecar's; the envelope keeps the
				// caller's context for a delivery again.
				header = req.Header.Clone()
				span = tr.Start(req.Header, &header, serveKind(req), targetType(req), req.TargetName(), req.Method, req.Path)
				span.Redelivery(req.MayRepeat)
			}
		}
		start := time.Now()
		r, err := app.Do(ctx, req.Method, req.Path, req.Query, header, req.Body)
		running.End(time.Since(start))
		over.answered()
		if r != nil {
			span.End(r.Status, err)
		} else {
			span.End(0, err)
		}
		switch {
		case req.ActorType != "":
			// The method is the last segment of the implementation path.
			met.UserCode(req.ActorType, req.Path[strings.LastIndexByte(req.Path, '/'):], time.Since(start))
		case req.Service != "":
			met.UserCode("", req.Path, time.Since(start))
		}
		if err != nil {
			var u *appclient.Unreachable
			if errors.As(err, &u) {
				return nil, err
			}
			return &mesh.Envelope{Status: 500, Error: true, Body: []byte(err.Error())}, nil
		}
		return &mesh.Envelope{Status: r.Status, Header: r.Header, Body: r.Body}, nil
	}
}

func serveKind(req *mesh.Envelope) int {
	if req.Async {
		return tracing.Deliver
	}
	return tracing.Serve
}

func targetType(req *mesh.Envelope) string {
	if req.ActorType != "" {
		return "actor"
	}
	return "service"
}

// requestTimeoutMs is KAR_REQUEST_TIMEOUT as KAR exports it and kar-sdk
// reads it: milliseconds, negative for none.
func requestTimeoutMs(d time.Duration) string {
	if d <= 0 {
		return "-1"
	}
	return strconv.FormatInt(max(d.Milliseconds(), 1), 10)
}

// oneLine keeps a joined error on one line.
func oneLine(err error) string {
	return strings.ReplaceAll(err.Error(), "\n", "; ")
}
