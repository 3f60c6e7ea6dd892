// Package devenv serves the two backends of a kar mesh on this machine: a
// Kafka-protocol broker (github.com/twmb/franz-go/pkg/kfake, in process) and
// a Redis (the real redis-server when it is on PATH, else the embedded
// github.com/alicebob/miniredis/v2). `kar dev` and the integration tests
// (internal/testenv) both use it, so what a newcomer runs is what CI tests.
//
// Every process started here is stopped by its PID in Close.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
)

// RedisMode chooses which Redis serves.
type RedisMode string

const (
	// RedisAuto uses redis-server when it is on PATH, else the embedded server.
	RedisAuto RedisMode = "auto"
	// RedisServer requires the real redis-server.
	RedisServer RedisMode = "server"
	// RedisEmbedded serves the embedded Redis-protocol server in process.
	RedisEmbedded RedisMode = "embedded"
)

// ParseRedisMode checks a -redis flag value.
func ParseRedisMode(s string) (RedisMode, error) {
	switch m := RedisMode(s); m {
	case "", RedisAuto:
		return RedisAuto, nil
	case RedisServer, RedisEmbedded:
		return m, nil
	}
	return "", fmt.Errorf("unknown Redis mode %q: want auto, server or embedded", s)
}

// DefaultKafkaUser is the SASL user of managed Kafka services (IBM Event Streams).
const DefaultKafkaUser = "token"

// Options says what to serve and where. The zero value serves both
// backends on free loopback ports, without TLS or passwords.
type Options struct {
	// KafkaAddr and RedisAddr are host:port to listen on; "" means
	// 127.0.0.1:0 (a free port).
	KafkaAddr string
	RedisAddr string
	// AdvertiseHost is the host name Env reports (default: the listen host).
	AdvertiseHost string

	// KafkaBrokers is how many brokers the Kafka-protocol cluster has (0
	// means 1): the first listens on KafkaAddr, the others on free ports
	// of its host, all in one process. Topics and leaders spread over them
	// as over a real cluster's, so kar's replication settings and a
	// partition leader's move (KafkaCluster) can be tested.
	KafkaBrokers int

	Redis RedisMode

	// DataDir keeps the backends' data across StopRedis/StartRedis and
	// StopKafka/StartKafka (redis-server: appendonly, fsync always, in
	// DataDir/redis; kfake: DataDir/kafka). "" keeps everything in memory
	// or in a temporary directory removed by Close.
	DataDir string

	// KafkaTLS and RedisTLS make that backend serve TLS only.
	KafkaTLS *Certs
	RedisTLS *Certs

	// KafkaPassword enables SASL PLAIN with the superuser KafkaUser
	// (default "token"), as managed Kafka services do.
	KafkaUser     string
	KafkaPassword string

	// RedisUser with RedisPassword adds a full-access ACL user and turns
	// the default user off; RedisPassword alone is requirepass.
	RedisUser     string
	RedisPassword string

	// Retention is how long the broker keeps records and RetentionBytes
	// how many bytes of them per partition, as a Kafka broker's
	// log.retention.ms and log.retention.bytes: older records are deleted
	// (checked every Retention/10, at most every minute). 0 keeps
	// everything, which grows with every message ever sent.
	Retention      time.Duration
	RetentionBytes int64

	// StartTimeout bounds how long redis-server may take to answer PING
	// (default 15s).
	StartTimeout time.Duration

	Logger *slog.Logger
}

// Backend is a running broker and Redis.
type Backend struct {
	opts Options
	log  *slog.Logger

	kafka *kafkaServer
	redis redisServer

	mu     sync.Mutex
	closed bool
}

// redisServer is the real redis-server process or the embedded server.
type redisServer interface {
	addr() string
	describe() string
	start(ctx context.Context) error
	stop(kill bool) error
	close() error
}

// PortInUseError says a listen address is taken.
type PortInUseError struct {
	Service string // "Kafka" or "Redis"
	Addr    string
	Err     error
}

func (e *PortInUseError) Error() string {
	_, port, _ := net.SplitHostPort(e.Addr)
	return fmt.Sprintf("port %s is in use (%s on %s): %v", port, e.Service, e.Addr, e.Err)
}

func (e *PortInUseError) Unwrap() error { return e.Err }

// Port is the port number of the address in use.
func (e *PortInUseError) Port() string {
	_, port, _ := net.SplitHostPort(e.Addr)
	return port
}

// Start serves both backends. On error nothing is left running.
func Start(ctx context.Context, opts Options) (*Backend, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KafkaAddr == "" {
		opts.KafkaAddr = "127.0.0.1:0"
	}
	if opts.RedisAddr == "" {
		opts.RedisAddr = "127.0.0.1:0"
	}
	if opts.StartTimeout <= 0 {
		opts.StartTimeout = 15 * time.Second
	}
	if opts.KafkaPassword != "" && opts.KafkaUser == "" {
		opts.KafkaUser = DefaultKafkaUser
	}
	if opts.RedisUser != "" && opts.RedisPassword == "" {
		return nil, errors.New("devenv: RedisUser needs RedisPassword")
	}
	mode, err := ParseRedisMode(string(opts.Redis))
	if err != nil {
		return nil, err
	}
	for _, a := range []struct{ name, addr string }{{"Kafka", opts.KafkaAddr}, {"Redis", opts.RedisAddr}} {
		if _, _, err := net.SplitHostPort(a.addr); err != nil {
			return nil, fmt.Errorf("bad %s address %q: want host:port: %w", a.name, a.addr, err)
		}
	}

	b := &Backend{opts: opts, log: opts.Logger}
	b.kafka = &kafkaServer{opts: &b.opts}
	if err := b.kafka.start(); err != nil {
		return nil, err
	}
	switch mode {
	case RedisEmbedded:
		b.redis = newEmbeddedRedis(&b.opts)
	default:
		path, lookErr := lookRedisServer()
		switch {
		case lookErr == nil:
			b.redis = newRedisProcess(&b.opts, path)
		case mode == RedisServer:
			b.kafka.stop()
			return nil, lookErr
		default:
			b.log.Info("redis-server not found on PATH; serving the embedded Redis", "err", lookErr)
			b.redis = newEmbeddedRedis(&b.opts)
		}
	}
	if err := b.redis.start(ctx); err != nil {
		b.kafka.stop()
		_ = b.redis.close()
		return nil, err
	}
	return b, nil
}

// KafkaBrokers is the bootstrap address, as Env reports it: every broker's,
// comma separated.
func (b *Backend) KafkaBrokers() string {
	var out []string
	for _, a := range b.kafka.addrs() {
		out = append(out, net.JoinHostPort(b.advertise(a), portOf(a)))
	}
	return strings.Join(out, ",")
}

// KafkaAddr is the address the (first) broker listens on.
func (b *Backend) KafkaAddr() string { return b.kafka.addr() }

// KafkaCluster is the running Kafka-protocol cluster (nil while stopped),
// for tests that act on it as an operator would: move a partition's
// leader, look at a topic's replicas, observe requests.
func (b *Backend) KafkaCluster() *kfake.Cluster { return b.kafka.kfake() }

// RedisAddr is the address Redis listens on.
func (b *Backend) RedisAddr() string { return b.redis.addr() }

// RedisHost is the Redis host, as Env reports it.
func (b *Backend) RedisHost() string { return b.advertise(b.redis.addr()) }

// RedisPort is the Redis port.
func (b *Backend) RedisPort() int {
	p, _ := strconv.Atoi(portOf(b.redis.addr()))
	return p
}

// RedisPID is the process id of redis-server; 0 for the embedded server
// or while Redis is stopped.
func (b *Backend) RedisPID() int {
	if rp, ok := b.redis.(*redisProcess); ok {
		return rp.pid()
	}
	return 0
}

// RedisDescription says which Redis serves, e.g. "redis-server 7.0.15 (pid 42)".
func (b *Backend) RedisDescription() string { return b.redis.describe() }

// Env is the KAFKA_* and REDIS_* variables a kar process needs to use this
// backend (names as in sidecar/config). It holds the passwords: pass it to
// child processes only, never log it.
func (b *Backend) Env() []string {
	env := []string{
		"KAFKA_BROKERS=" + b.KafkaBrokers(),
		"REDIS_HOST=" + b.RedisHost(),
		"REDIS_PORT=" + strconv.Itoa(b.RedisPort()),
	}
	if c := b.opts.KafkaTLS; c != nil {
		env = append(env, "KAFKA_ENABLE_TLS=true", "KAFKA_CA="+c.CABase64())
	}
	if b.opts.KafkaPassword != "" {
		env = append(env, "KAFKA_USERNAME="+b.opts.KafkaUser, "KAFKA_PASSWORD="+b.opts.KafkaPassword)
	}
	if c := b.opts.RedisTLS; c != nil {
		env = append(env, "REDIS_ENABLE_TLS=true", "REDIS_CA="+c.CABase64())
	}
	if b.opts.RedisUser != "" {
		env = append(env, "REDIS_USER="+b.opts.RedisUser)
	}
	if b.opts.RedisPassword != "" {
		env = append(env, "REDIS_PASSWORD="+b.opts.RedisPassword)
	}
	return env
}

// StopRedis shuts Redis down: gracefully (SIGTERM, data saved when
// persisting), or with kill, at once (SIGKILL). StartRedis brings it back on
// the same port.
func (b *Backend) StopRedis(kill bool) error { return b.redis.stop(kill) }

// StartRedis restarts a stopped Redis on the same port, with the data of
// DataDir (redis-server) or of memory (embedded).
func (b *Backend) StartRedis(ctx context.Context) error { return b.redis.start(ctx) }

// StopKafka closes the broker and every client connection to it.
func (b *Backend) StopKafka() { b.kafka.stop() }

// StartKafka serves the broker again on the same port. Topics and records
// survive only with DataDir.
func (b *Backend) StartKafka() error { return b.kafka.start() }

// Close stops both backends (redis-server by its PID) and removes
// temporary files. It is safe to call more than once.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	b.kafka.stop()
	return b.redis.close()
}

func (b *Backend) advertise(addr string) string {
	if b.opts.AdvertiseHost != "" {
		return b.opts.AdvertiseHost
	}
	host, _, _ := net.SplitHostPort(addr)
	return host
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// listen opens addr, reporting a taken port as *PortInUseError.
func listen(service, addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if isAddrInUse(err) {
			return nil, &PortInUseError{Service: service, Addr: addr, Err: err}
		}
		return nil, fmt.Errorf("cannot listen for %s on %s: %w", service, addr, err)
	}
	return ln, nil
}
