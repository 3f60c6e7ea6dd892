package sidecar

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/actorstate"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/events"
	"github.com/kar-runtime/kar/sidecar/migrate"
	"github.com/kar-runtime/kar/sidecar/reminders"
)

// MigrateConfig is the configuration of kar migrate.
type MigrateConfig struct {
	config.Client
	DryRun bool `flag:"dry-run" desc:"only read KAR's data and say what would be copied"`
}

// Migrate is `kar migrate -app A [-dry-run]`: it copies the application's
// actor state, reminders and event subscriptions from KAR 1.3.10's Redis
// layout into kar's (package migrate), through kar's own routes served in
// this process, and prints a summary. Exit 1 when a record could not be
// copied (each is named on stderr), 2 on bad configuration.
func Migrate(ctx context.Context, cfg *MigrateConfig, stdout, stderr io.Writer) int {
	if err := cfg.Client.Validate(); err != nil {
		fmt.Fprintln(stderr, "kar migrate:", err)
		return ExitConfig
	}
	log, _ := NewLogger(cfg.Verbose, stderr)
	store.RouteLogs(log)
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	be, err := connect(cctx, cfg.Backend, cfg.App, !cfg.DryRun)
	cancel()
	if err != nil {
		fmt.Fprintln(stderr, "kar migrate:", oneLine(err))
		return ExitConfig
	}
	defer be.Close()
	sum, err := migrate.Run(ctx, be.Redis, cfg.App, StoreRoutes(be, cfg.App, log), cfg.DryRun)
	for _, p := range sum.Problems {
		fmt.Fprintln(stderr, "kar migrate: not copied:", p)
	}
	if err != nil {
		fmt.Fprintln(stderr, "kar migrate:", err)
		return ExitFailure
	}
	verb := "copied"
	if cfg.DryRun {
		verb = "would copy"
	}
	fmt.Fprintf(stdout, "kar migrate: application %s: %s %s\n", cfg.App, verb, sum)
	if len(sum.Problems) > 0 {
		return ExitFailure
	}
	return 0
}

// StoreRoutes serves kar's actor state, reminders and event subscription
// routes over be, without a mesh: what kar migrate writes through.
func StoreRoutes(be *Backends, app string, log *slog.Logger) http.Handler {
	keys := store.NewKeys(app)
	mux := http.NewServeMux()
	actorstate.Register(mux, be.Redis, keys)
	reminders.Register(mux, reminders.New(be.Redis, keys, reminders.Options{Logger: log}))
	events.New(events.Options{App: app, Redis: be.Redis, Kafka: be.Kafka, Keys: keys, Logger: log}).Register(mux)
	return mux
}
