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
	"strconv"
	"strings"
	"time"

	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/redis/go-redis/v9"
)

// Connect returns a Redis client for cfg and checks that Redis answers.
// The error says what to fix and never holds the password.
func Connect(ctx context.Context, cfg config.Backend) (*redis.Client, error) {
	opts := &redis.Options{
		Addr:            net.JoinHostPort(cfg.RedisHost, strconv.Itoa(cfg.RedisPort)),
		Username:        cfg.RedisUser,
		Password:        cfg.RedisPassword,
		DialTimeout:     2 * time.Second,
		ReadTimeout:     5 * time.Second,
		WriteTimeout:    5 * time.Second,
		MaxRetries:      3,
		MinRetryBackoff: 20 * time.Millisecond,
		MaxRetryBackoff: 500 * time.Millisecond,
		PoolSize:        64,
		// Keep the client lean: no client-side identity handshake, RESP2
		// (supported by every managed Redis and by the embedded server).
		Protocol:        2,
		DisableIdentity: true,
	}
	if cfg.RedisEnableTLS {
		tc, err := TLSConfig(cfg.RedisHost, cfg.RedisCA, cfg.RedisTLSSkipVerify)
		if err != nil {
			return nil, fmt.Errorf("REDIS_CA: %w", err)
		}
		opts.TLSConfig = tc
	}
	rdb := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, explain(opts.Addr, cfg.RedisEnableTLS, err)
	}
	return rdb, nil
}

func explain(addr string, tlsOn bool, err error) error {
	var ne net.Error
	switch {
	case errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded):
		hint := "is it running? For a local backend run `kar dev` and `source scripts/kar-env-local.sh`"
		if tlsOn {
			hint = "check REDIS_HOST, REDIS_PORT and REDIS_ENABLE_TLS"
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
