package externalscaler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/kar-runtime/kar/autoscale"
	"github.com/kar-runtime/kar/sidecar/config"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Config is kar-scaler's configuration: the backend as every kar command
// takes it (KAFKA_*, REDIS_*, the config directory), a port and a poll.
type Config struct {
	config.Backend
	Port      int           `envconfig:"KAR_SCALER_PORT" flag:"port" default:"6000" desc:"gRPC port KEDA calls"`
	Poll      time.Duration `envconfig:"KAR_SCALER_POLL" flag:"poll" default:"1s" desc:"how often StreamIsActive reads the load"`
	Verbose   string        `envconfig:"KAR_VERBOSE" flag:"v" default:"info" desc:"log level: error, warn, info, debug"`
	ConfigDir string        `envconfig:"KAR_CONFIG_DIR" flag:"config_dir" default:"/var/run/secrets/kar.ibm.com" desc:"directory of configuration files, one per lower-case key"`
}

// Main is `kar-scaler [flags]`: it serves KEDA's external scaler (and the
// standard gRPC health service, for probes) until ctx ends. ready, when
// not nil, gets the address served.
func Main(ctx context.Context, args []string, stderr io.Writer, ready func(addr string)) int {
	var cfg Config
	if _, err := config.Load(&cfg, "kar-scaler", args, stderr); err != nil {
		if errors.Is(err, config.ErrHelp) {
			return 0
		}
		fmt.Fprintln(stderr, "kar-scaler:", err)
		return 2
	}
	lvl, err := config.ParseLevel(cfg.Verbose)
	if err != nil {
		fmt.Fprintln(stderr, "kar-scaler:", err)
		return 2
	}
	if err := cfg.Backend.Validate(); err != nil {
		fmt.Fprintln(stderr, "kar-scaler:", err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	src, err := autoscale.Dial(ctx, cfg.Backend)
	if err != nil {
		log.Error("kar-scaler: cannot reach the backend", "err", err)
		return 1
	}
	defer src.Close()
	ln, err := net.Listen("tcp", net.JoinHostPort("", strconv.Itoa(cfg.Port)))
	if err != nil {
		log.Error("kar-scaler: cannot listen", "port", cfg.Port, "err", err)
		return 1
	}
	gs := grpc.NewServer()
	RegisterExternalScalerServer(gs, NewServer(src, cfg.Poll, log))
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() {
		<-ctx.Done()
		gs.GracefulStop()
	}()
	log.Info("kar-scaler: serving KEDA's external scaler", "addr", ln.Addr().String(), "poll", cfg.Poll)
	if ready != nil {
		ready(ln.Addr().String())
	}
	if err := gs.Serve(ln); err != nil {
		log.Error("kar-scaler: serve", "err", err)
		return 1
	}
	return 0
}
