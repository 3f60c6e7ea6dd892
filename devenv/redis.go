package devenv

import (
	"context"
	"errors"
	"fmt"
	"github.com/kar-runtime/kar/internal/tail"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// lookRedisServer finds redis-server on PATH.
func lookRedisServer() (string, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("redis-server not found on PATH: install it (Debian: apt-get install redis-server) or use the embedded Redis: %w", err)
	}
	return path, nil
}

// redisProcess is a redis-server child process. Its whole configuration,
// passwords included, is in a 0600 file, so no secret shows in `ps`.
type redisProcess struct {
	opts *Options
	path string

	mu      sync.Mutex
	tmpDir  string // config file, and data when not persisting
	port    int    // fixed after the first start
	host    string
	version string
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	out     *tail.Buffer
}

func newRedisProcess(opts *Options, path string) *redisProcess {
	return &redisProcess{opts: opts, path: path}
}

func (r *redisProcess) addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return net.JoinHostPort(r.host, strconv.Itoa(r.port))
}

func (r *redisProcess) describe() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid := 0
	if r.cmd != nil && r.cmd.Process != nil {
		pid = r.cmd.Process.Pid
	}
	return fmt.Sprintf("redis-server %s (%s, pid %d)", r.version, r.path, pid)
}

// pid is the process id of the running redis-server, 0 when stopped.
func (r *redisProcess) pid() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil || r.cmd.Process == nil {
		return 0
	}
	return r.cmd.Process.Pid
}

func (r *redisProcess) start(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return nil
	}
	if r.tmpDir == "" {
		dir, err := os.MkdirTemp("", "kar-redis-")
		if err != nil {
			return fmt.Errorf("cannot make a directory for redis-server: %w", err)
		}
		r.tmpDir = dir
		host, port, _ := net.SplitHostPort(r.opts.RedisAddr)
		r.host = host
		r.port, _ = strconv.Atoi(port)
		r.version = redisVersion(r.path)
	}
	// With port 0 we pick a free port and retry if another process takes
	// it between our probe and redis-server's bind.
	pick := r.port == 0
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if pick {
			if r.port, err = freePort(r.host); err != nil {
				return err
			}
		} else if err = probeFree(r.host, r.port); err != nil {
			return err
		}
		err = r.spawn(ctx)
		if err == nil || !pick || !strings.Contains(err.Error(), "in use") {
			break
		}
	}
	if err != nil && pick {
		r.port = 0
	}
	return err
}

// spawn starts redis-server and waits until it answers PING. Called with r.mu held.
func (r *redisProcess) spawn(ctx context.Context) error {
	conf := filepath.Join(r.tmpDir, "redis.conf")
	if err := os.WriteFile(conf, []byte(r.config()), 0o600); err != nil {
		return fmt.Errorf("cannot write redis-server configuration: %w", err)
	}
	if r.opts.DataDir != "" {
		if err := os.MkdirAll(filepath.Join(r.opts.DataDir, "redis"), 0o700); err != nil {
			return fmt.Errorf("cannot make the Redis data directory: %w", err)
		}
	}
	out := &tail.Buffer{Max: 8 << 10} // redis-server's log, for error messages
	cmd := exec.Command(r.path, conf)
	cmd.Dir = r.tmpDir
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = childSysProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cannot start %s: %w", r.path, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	r.cmd, r.exited, r.out = cmd, exited, out

	deadline := time.Now().Add(r.opts.StartTimeout)
	addr := net.JoinHostPort(r.host, strconv.Itoa(r.port))
	var lastErr error
	for {
		select {
		case <-exited:
			r.cmd = nil
			msg := strings.TrimSpace(out.String())
			if strings.Contains(msg, "Address already in use") {
				return &PortInUseError{Service: "Redis", Addr: addr, Err: errors.New("redis-server: address already in use")}
			}
			return fmt.Errorf("redis-server exited at start: %s", lastLines(msg, 5))
		default:
		}
		if lastErr = pingRedis(ctx, addr, r.opts); lastErr == nil {
			r.opts.Logger.Info("redis-server serving", "addr", addr, "pid", cmd.Process.Pid)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			r.killLocked()
			return fmt.Errorf("redis-server on %s did not answer PING within %s: %w; its output: %s",
				addr, r.opts.StartTimeout, lastErr, lastLines(out.String(), 5))
		}
		select {
		case <-time.After(20 * time.Millisecond):
		case <-exited:
		case <-ctx.Done():
		}
	}
}

func (r *redisProcess) config() string {
	var c strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&c, format+"\n", args...) }
	line("bind %s", r.host)
	if t := r.opts.RedisTLS; t != nil {
		line("port 0")
		line("tls-port %d", r.port)
		line("tls-cert-file %s", quoteConf(t.CertFile))
		line("tls-key-file %s", quoteConf(t.KeyFile))
		line("tls-ca-cert-file %s", quoteConf(t.CAFile))
		// Managed Redis services do not ask clients for certificates either.
		line("tls-auth-clients no")
	} else {
		line("port %d", r.port)
	}
	line("daemonize no")
	line(`logfile ""`)
	line("loglevel notice")
	line(`save ""`)
	if r.opts.DataDir != "" {
		line("dir %s", quoteConf(filepath.Join(r.opts.DataDir, "redis")))
		line("appendonly yes")
		line("appendfsync always")
	} else {
		line("dir %s", quoteConf(r.tmpDir))
		line("appendonly no")
	}
	switch {
	case r.opts.RedisUser != "":
		line("user default off")
		line("user %s on %s ~* &* +@all", quoteConf(r.opts.RedisUser), quoteConf(">"+r.opts.RedisPassword))
	case r.opts.RedisPassword != "":
		line("requirepass %s", quoteConf(r.opts.RedisPassword))
	}
	return c.String()
}

func (r *redisProcess) stop(kill bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return nil
	}
	if kill {
		r.killLocked()
		return nil
	}
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
		r.cmd = nil
	case <-time.After(10 * time.Second):
		r.killLocked()
		return errors.New("redis-server did not stop within 10s of SIGTERM; killed it")
	}
	return nil
}

// killLocked sends SIGKILL to the process and waits for it to be reaped.
func (r *redisProcess) killLocked() {
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

func (r *redisProcess) close() error {
	err := r.stop(false)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tmpDir != "" {
		if rmErr := os.RemoveAll(r.tmpDir); rmErr != nil && err == nil {
			err = rmErr
		}
	}
	return err
}

// redisVersion asks the binary; it is only shown to people.
func redisVersion(path string) string {
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return "(unknown version)"
	}
	for _, f := range strings.Fields(string(out)) {
		if v, ok := strings.CutPrefix(f, "v="); ok {
			return v
		}
	}
	return strings.TrimSpace(string(out))
}

// quoteConf quotes a redis.conf argument that may hold spaces.
func quoteConf(s string) string { return strconv.Quote(s) }

// embeddedRedis is miniredis serving on a socket. Its data lives as long as
// the Backend, so StopRedis/StartRedis keep it.
type embeddedRedis struct {
	opts *Options

	mu      sync.Mutex
	m       *miniredis.Miniredis
	bound   string
	running bool
}

func newEmbeddedRedis(opts *Options) *embeddedRedis {
	m := miniredis.NewMiniRedis()
	// Without this TTLs never run out, and the mesh's leases rely on them.
	m.ClockTTL(true)
	switch {
	case opts.RedisUser != "":
		m.RequireUserAuth(opts.RedisUser, opts.RedisPassword)
	case opts.RedisPassword != "":
		m.RequireAuth(opts.RedisPassword)
	}
	return &embeddedRedis{opts: opts, m: m}
}

func (e *embeddedRedis) addr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.bound
}

func (e *embeddedRedis) describe() string {
	return "embedded Redis-protocol server (miniredis; redis-server not used)"
}

func (e *embeddedRedis) start(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		return nil
	}
	addr := e.opts.RedisAddr
	if e.bound != "" {
		addr = e.bound
	}
	host, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	if p != 0 {
		if err := probeFree(host, p); err != nil {
			return err
		}
	}
	var err error
	if t := e.opts.RedisTLS; t != nil {
		err = e.m.StartAddrTLS(addr, t.ServerConfig())
	} else {
		err = e.m.StartAddr(addr)
	}
	if err != nil {
		if isAddrInUse(err) {
			return &PortInUseError{Service: "Redis", Addr: addr, Err: err}
		}
		return fmt.Errorf("cannot serve the embedded Redis on %s: %w", addr, err)
	}
	e.running = true
	e.bound = net.JoinHostPort(host, e.m.Port())
	e.opts.Logger.Info("embedded Redis serving", "addr", e.bound)
	return nil
}

func (e *embeddedRedis) stop(bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.running {
		e.m.Close()
		e.running = false
	}
	return nil
}

func (e *embeddedRedis) close() error { return e.stop(true) }

// pingRedis connects as a kar sidecar would and sends PING.
func pingRedis(ctx context.Context, addr string, opts *Options) error {
	o := &redis.Options{
		Addr:            addr,
		Username:        opts.RedisUser,
		Password:        opts.RedisPassword,
		DialTimeout:     time.Second,
		ReadTimeout:     time.Second,
		MaxRetries:      -1,
		PoolSize:        1,
		DisableIdentity: true,
	}
	if t := opts.RedisTLS; t != nil {
		o.TLSConfig = t.ClientConfig()
	}
	c := redis.NewClient(o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Ping(ctx).Err()
}

// freePort asks the kernel for a free port on host.
func freePort(host string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, fmt.Errorf("cannot find a free port on %s: %w", host, err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// probeFree fails with *PortInUseError when host:port is taken, so the
// user gets one clear line instead of redis-server's log.
func probeFree(host string, port int) error {
	ln, err := listen("Redis", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return ln.Close()
}

func isAddrInUse(err error) bool {
	return errors.Is(err, syscall.EADDRINUSE) || strings.Contains(err.Error(), "address already in use")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
