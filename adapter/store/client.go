package store

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/redis/go-redis/v9"
)

// connBufferSize is the size of each Redis connection's read and write
// buffers (net/http's, and go-redis's before v9.12).
const connBufferSize = 4 << 10

// PubSubCheck is how long a pub/sub connection may stay silent before
// its client pings Redis to check it (go-redis' default, 3 s, made each
// idle sidecar ping about once a second over its subscriptions).
const PubSubCheck = 10 * time.Second

// PoolSize is how many connections to Redis a client keeps for commands at
// most (on each node of a cluster), and PipelinePoolSize how many more
// go-redis keeps for pipelines (a wider burst of them takes connections of
// the main pool); the notices' pub/sub connection comes on top.
//
// go-redis keeps every connection its pools opened until the client
// closes: a burst of Redis commands (a burst of actor activations, each
// claiming its placement) left a sidecar holding as many as it had at once,
// up to the 64 of the pool it had, each a client of Redis and about 12 KB
// of the sidecar's heap (a quarter of its live heap under the bench's actor
// load, which doubled its collections); 200 such sidecars would pass
// Redis's default limit of 10,000 clients. Past the bound a command waits
// for a connection (go-redis queues it, at most PoolTimeout: ReadTimeout +
// 1 s), and one waits a Redis round trip or a few: 16 connections carry far
// more commands a second than a sidecar sends.
const (
	PoolSize         = 16
	PipelinePoolSize = 4
)

// Connect returns a Redis client for cfg and checks that Redis answers:
// a cluster client (go-redis's ClusterClient, following the cluster's
// slots from the seed nodes of REDIS_HOST) with REDIS_CLUSTER, else a
// client of the one address (a single Redis, or the endpoint of a managed
// primary-replica Redis). The error says what to fix and never holds the
// password.
func Connect(ctx context.Context, cfg config.Backend) (redis.UniversalClient, error) {
	addrs, err := cfg.RedisAddrs()
	if err != nil {
		return nil, err
	}
	opts := &redis.Options{
		Addr:             addrs[0],
		Username:         cfg.RedisUser,
		Password:         cfg.RedisPassword,
		DialTimeout:      2 * time.Second,
		ReadTimeout:      5 * time.Second,
		WriteTimeout:     5 * time.Second,
		MaxRetries:       3,
		MinRetryBackoff:  20 * time.Millisecond,
		MaxRetryBackoff:  500 * time.Millisecond,
		PoolSize:         PoolSize,
		PipelinePoolSize: PipelinePoolSize,
		// Keep the client lean: no client-side identity handshake, RESP2
		// (supported by every managed Redis and by the embedded server).
		Protocol:        2,
		DisableIdentity: true,
		// go-redis gives every connection 32 KiB read and write buffers,
		// and pipeline connections 128 KiB: a loaded sidecar's ~30
		// connections held 2 MB of them, half its live heap. kar's
		// commands and replies are small (keys, leases, offsets); a
		// larger one takes more than one read or write.
		ReadBufferSize:          connBufferSize,
		WriteBufferSize:         connBufferSize,
		PipelineReadBufferSize:  connBufferSize,
		PipelineWriteBufferSize: connBufferSize,
	}
	if cfg.RedisEnableTLS {
		// A cluster's nodes each have their own name: leave ServerName
		// empty so that each is verified against the address dialled.
		serverName := ""
		if !cfg.RedisCluster {
			serverName, _, _ = net.SplitHostPort(addrs[0])
		}
		tc, err := TLSConfig(serverName, cfg.RedisCA, cfg.RedisTLSSkipVerify)
		if err != nil {
			return nil, fmt.Errorf("REDIS_CA: %w", err)
		}
		opts.TLSConfig = tc
	}
	var rdb redis.UniversalClient
	if cfg.RedisCluster {
		cc := redis.NewClusterClient(clusterOptions(opts, addrs))
		cc.AddHook(reloadOnNetError{cc})
		rdb = cc
	} else {
		rdb = redis.NewClient(opts)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, explain(strings.Join(addrs, ","), cfg.RedisEnableTLS, err)
	}
	return rdb, nil
}

// clusterOptions are the options of a cluster client with the per-node
// settings of o.
func clusterOptions(o *redis.Options, addrs []string) *redis.ClusterOptions {
	return &redis.ClusterOptions{
		Addrs:           addrs,
		Username:        o.Username,
		Password:        o.Password,
		DialTimeout:     o.DialTimeout,
		ReadTimeout:     o.ReadTimeout,
		WriteTimeout:    o.WriteTimeout,
		MaxRetries:      o.MaxRetries,
		MinRetryBackoff: o.MinRetryBackoff,
		MaxRetryBackoff: o.MaxRetryBackoff,
		// Per node: a cluster of N primaries may take N times the connections.
		PoolSize:        o.PoolSize,
		Protocol:        o.Protocol,
		DisableIdentity: o.DisableIdentity,
		TLSConfig:       o.TLSConfig,
		// The pipeline sizes are left out: on a cluster client, setting
		// them adds a pipeline pool per node.
		ReadBufferSize:  o.ReadBufferSize,
		WriteBufferSize: o.WriteBufferSize,
		// A safety net under reloadOnNetError (go-redis' default is 60 s).
		ClusterStateReloadInterval: 10 * time.Second,
	}
}

// reloadOnNetError makes a cluster client read the cluster's layout again
// as soon as a command fails on the network. go-redis reads it again on a
// MOVED answer, or when it is older than ClusterStateReloadInterval; a
// primary that died answers nothing, so the client went on dialling it for
// up to a minute after its replica had taken over (redis/go-redis#3979),
// and every lease on that shard lapsed meanwhile. ReloadState runs at most
// one reload at a time, 200 ms apart.
type reloadOnNetError struct{ c *redis.ClusterClient }

func (h reloadOnNetError) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := next(ctx, network, addr)
		if err != nil {
			h.c.ReloadState(ctx)
		}
		return conn, err
	}
}

func (h reloadOnNetError) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnNetError) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnNetError) check(ctx context.Context, err error) {
	var ne net.Error
	if err != nil && (errors.As(err, &ne) || strings.Contains(err.Error(), "failed to dial")) {
		h.c.ReloadState(ctx)
	}
}

func explain(addr string, tlsOn bool, err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded):
		hint := "is it running? For a local backend run `kar dev` and `source scripts/kar-env-local.sh`"
		if tlsOn || strings.Contains(addr, ",") {
			hint = "check REDIS_HOST, REDIS_PORT, REDIS_CLUSTER and REDIS_ENABLE_TLS"
		}
		return fmt.Errorf("cannot reach Redis at %s: %s", addr, hint)
	case isAuthErr(err):
		return fmt.Errorf("Redis at %s refused the credentials: check REDIS_USER and REDIS_PASSWORD", addr)
	default:
		return fmt.Errorf("Redis at %s: %w", addr, err)
	}
}

func isAuthErr(err error) bool {
	s := err.Error()
	for _, p := range []string{"WRONGPASS", "NOAUTH", "invalid password", "invalid username-password"} {
		if strings.Contains(s, p) {
			return true
		}
	}
	return false
}

// TLSConfig builds the client TLS settings shared by the Redis and Kafka
// adapters: an optional base64-encoded PEM CA (as managed services hand it
// out) and an optional skip of verification.
func TLSConfig(serverName, caBase64 string, skipVerify bool) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName, InsecureSkipVerify: skipVerify}
	if caBase64 == "" {
		return tc, nil
	}
	pem, err := base64.StdEncoding.DecodeString(caBase64)
	if err != nil {
		// Accept a PEM given as is, too.
		pem = []byte(caBase64)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("the CA certificate is neither base64-encoded PEM nor PEM")
	}
	tc.RootCAs = pool
	return tc, nil
}

// RouteLogs sends go-redis's own messages (pool dial failures, reconnects)
// to log at warn level instead of raw lines on stderr. go-redis keeps one
// logger per process, so this is set once by the process's main path.
func RouteLogs(log *slog.Logger) {
	redis.SetLogger(slogPrintf{log})
}

type slogPrintf struct{ log *slog.Logger }

func (l slogPrintf) Printf(ctx context.Context, format string, v ...any) {
	l.log.Warn("redis: " + fmt.Sprintf(format, v...))
}
