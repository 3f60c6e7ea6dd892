package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"time"

	"github.com/kar-runtime/kar/devenv"
)

// runDev serves the backends of scripts/kar-env-local.sh until ctx ends
// (Ctrl-C or SIGTERM).
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kar dev", flag.ContinueOnError)
	fs.SetOutput(stderr)
	kafkaPort := fs.Int("kafka_port", 31093, "port of the Kafka-protocol broker")
	redisPort := fs.Int("redis_port", 31379, "port of Redis")
	redisMode := fs.String("redis", "auto", "which Redis: auto (redis-server when on PATH, else embedded), server, embedded")
	dataDir := fs.String("data_dir", "", "keep Redis and Kafka data in this directory across restarts (default: in memory)")
	retention := fs.Duration("retention", 24*time.Hour, "delete Kafka records older than this, as a broker's log.retention.ms (0: keep all)")
	retentionMB := fs.Int64("retention_mb", 256, "keep at most this many MiB of records per partition, as log.retention.bytes (0: no limit)")
	verbose := fs.String("v", "warn", "log level: error, warn, info, debug")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: kar dev [-kafka_port P] [-redis_port P] [-redis auto|server|embedded] [-data_dir DIR] [-retention D] [-retention_mb N]")
		fmt.Fprintln(stderr, "\nServes a Kafka-protocol broker and a Redis on localhost for development;")
		fmt.Fprintln(stderr, "in another shell, `source scripts/kar-env-local.sh` to use them.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "kar dev: unexpected argument %q; run `kar dev -h`\n", fs.Arg(0))
		return exitUsage
	}
	mode, err := devenv.ParseRedisMode(*redisMode)
	if err != nil {
		fmt.Fprintf(stderr, "kar dev: -redis: %v\n", err)
		return exitUsage
	}
	for name, p := range map[string]int{"-kafka_port": *kafkaPort, "-redis_port": *redisPort} {
		if p < 1 || p > 65535 {
			fmt.Fprintf(stderr, "kar dev: %s=%d: want a port between 1 and 65535\n", name, p)
			return exitUsage
		}
	}
	if *retention < 0 {
		fmt.Fprintf(stderr, "kar dev: -retention=%s: want a duration of 0 (keep all) or more, such as 24h\n", *retention)
		return exitUsage
	}
	if *retentionMB < 0 || *retentionMB > 1<<30 {
		fmt.Fprintf(stderr, "kar dev: -retention_mb=%d: want a number of MiB, 0 for no limit\n", *retentionMB)
		return exitUsage
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*verbose)); err != nil {
		fmt.Fprintf(stderr, "kar dev: -v=%q: want error, warn, info or debug\n", *verbose)
		return exitUsage
	}

	b, err := devenv.Start(ctx, devenv.Options{
		KafkaAddr:      "127.0.0.1:" + strconv.Itoa(*kafkaPort),
		RedisAddr:      "127.0.0.1:" + strconv.Itoa(*redisPort),
		AdvertiseHost:  "localhost",
		Redis:          mode,
		DataDir:        *dataDir,
		Retention:      *retention,
		RetentionBytes: *retentionMB << 20,
		Logger:         slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level})),
	})
	var inUse *devenv.PortInUseError
	switch {
	case errors.As(err, &inUse):
		fmt.Fprintf(stderr, "kar dev: port %s is in use: is another `kar dev` running? (or pick another with -%s_port)\n",
			inUse.Port(), map[string]string{"Kafka": "kafka", "Redis": "redis"}[inUse.Service])
		return exitUsage
	case err != nil && ctx.Err() != nil:
		fmt.Fprintln(stderr, "kar dev: interrupted while starting")
		return 1
	case err != nil:
		fmt.Fprintf(stderr, "kar dev: %v\n", err)
		return 1
	}

	storage := "in memory"
	if *dataDir != "" {
		storage = "data in " + *dataDir
	}
	if *retention > 0 || *retentionMB > 0 {
		storage += fmt.Sprintf(", records kept %s / %d MiB per partition (0: no limit)", *retention, *retentionMB)
	}
	fmt.Fprintf(stdout, "kar dev: Kafka-protocol broker on %s (%s)\n", b.KafkaBrokers(), storage)
	fmt.Fprintf(stdout, "kar dev: Redis on %s:%d: %s\n", b.RedisHost(), b.RedisPort(), b.RedisDescription())
	if *kafkaPort == 31093 && *redisPort == 31379 {
		fmt.Fprintln(stdout, "kar dev: in another shell, `source scripts/kar-env-local.sh`, or export:")
	} else {
		fmt.Fprintln(stdout, "kar dev: in another shell, export:")
	}
	for _, kv := range b.Env() {
		fmt.Fprintf(stdout, "export %s\n", kv)
	}
	fmt.Fprintln(stdout, "kar dev: serving; press Ctrl-C to stop")

	<-ctx.Done()
	fmt.Fprintln(stdout, "kar dev: stopping")
	if err := b.Close(); err != nil {
		fmt.Fprintf(stderr, "kar dev: stopping: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, "kar dev: stopped")
	return 0
}
