package main

import (
	"bufio"
	"context"
	"fmt"
	"github.com/kar-runtime/kar/internal/ports"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// app is the application every process of the benchmark joins.
const app = "scale"

// Env is the benchmark's world: a redis-server child process, a
// Kafka-protocol broker in this process (so that every request reaching it
// can be counted), the kar binary, and the kar processes started so far.
type Env struct {
	kar  string // the kar binary
	self string // this binary, which also serves as the component
	dir  string // temporary files: Redis's, the processes' logs
	logs bool   // keep the kar processes' output (in dir)

	redisCmd  *exec.Cmd
	redisPort int
	rdb       *redis.Client
	broker    *kfake.Cluster
	brokerAt  string
	kafkaReqs *reqCounter

	client *http.Client

	mu    sync.Mutex
	procs []*Proc
}

// Proc is one `kar run` (or one-shot kar command) started by the benchmark.
type Proc struct {
	cmd         *exec.Cmd
	RuntimePort int
	AppPort     int
	Started     time.Time
	exited      chan struct{}
}

// PID is the process id of kar (the sidecar); its component is a child.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// URL is the base URL of the sidecar's REST API.
func (p *Proc) URL() string { return "http://127.0.0.1:" + strconv.Itoa(p.RuntimePort) }

// reqCounter counts the requests the broker receives, by API key.
type reqCounter struct {
	mu sync.Mutex
	n  map[int16]int64
}

func (c *reqCounter) add(key int16) {
	c.mu.Lock()
	c.n[key]++
	c.mu.Unlock()
}

func (c *reqCounter) snapshot() map[int16]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[int16]int64, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// NewEnv starts the backends. kar is the kar binary; self is the binary
// that serves the component when run with componentEnv=1 in its
// environment.
func NewEnv(ctx context.Context, kar, self string, keepLogs bool) (*Env, error) {
	dir, err := os.MkdirTemp("", "kar-scale-")
	if err != nil {
		return nil, err
	}
	e := &Env{kar: kar, self: self, dir: dir, logs: keepLogs, kafkaReqs: &reqCounter{n: map[int16]int64{}},
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 1024, IdleConnTimeout: time.Minute}}}
	if err := e.startRedis(ctx); err != nil {
		e.Close()
		return nil, err
	}
	e.broker, err = kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.AllowAutoTopicCreation(),
		kfake.DefaultNumPartitions(1),
	)
	if err != nil {
		e.Close()
		return nil, fmt.Errorf("start the Kafka-protocol broker: %w", err)
	}
	e.brokerAt = e.broker.ListenAddrs()[0]
	// Observe every request without handling it (false): kfake then
	// serves it as usual.
	e.broker.Control(func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.kafkaReqs.add(r.Key())
		return nil, nil, false
	})
	return e, nil
}

func (e *Env) startRedis(ctx context.Context) error {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is not on PATH (Debian: apt-get install redis-server): %w", err)
	}
	if e.redisPort, err = freePort(); err != nil {
		return err
	}
	cmd := exec.Command(path, "--port", strconv.Itoa(e.redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", e.dir, "--maxclients", "20000", "--logfile", "")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	e.redisCmd = cmd
	e.rdb = redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(e.redisPort), Protocol: 2, DisableIdentity: true, PoolSize: 4})
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := e.rdb.Ping(ctx).Err(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// BackendEnv is what a kar process needs to find the backends.
func (e *Env) BackendEnv() []string {
	return []string{"KAFKA_BROKERS=" + e.brokerAt, "REDIS_HOST=127.0.0.1", "REDIS_PORT=" + strconv.Itoa(e.redisPort)}
}

// RedisPID is redis-server's process id.
func (e *Env) RedisPID() int { return e.redisCmd.Process.Pid }

// Close stops every process started (by PID) and the backends.
func (e *Env) Close() {
	e.StopAll()
	if e.rdb != nil {
		e.rdb.Close()
	}
	if e.redisCmd != nil {
		e.redisCmd.Process.Kill()
		e.redisCmd.Wait()
	}
	if e.broker != nil {
		e.broker.Close()
	}
	if !e.logs {
		os.RemoveAll(e.dir)
	}
}

// environ is this process's environment without what configures kar
// (KAR_PPROF_ADDR is kept: the first sidecar to start serves profiles),
// plus the backends'.
func (e *Env) environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if (strings.HasPrefix(kv, "KAFKA_") || strings.HasPrefix(kv, "REDIS_") || strings.HasPrefix(kv, "KAR_")) && !strings.HasPrefix(kv, "KAR_PPROF_ADDR=") {
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, e.BackendEnv()...), extra...)
}

// StartSidecar starts `kar run -app scale FLAGS` on a free runtime port,
// with the benchmark's component when component is true (on a free app
// port), as a user launches one.
func (e *Env) StartSidecar(flags []string, component bool) (*Proc, error) {
	rp, err := freePort()
	if err != nil {
		return nil, err
	}
	p := &Proc{RuntimePort: rp, exited: make(chan struct{})}
	args := []string{"run", "-app", app, "-runtime_port", strconv.Itoa(rp)}
	if component {
		if p.AppPort, err = freePort(); err != nil {
			return nil, err
		}
		args = append(args, "-app_port", strconv.Itoa(p.AppPort))
	}
	args = append(args, flags...)
	if component {
		args = append(args, "--", e.self)
	}
	cmd := exec.Command(e.kar, args...)
	cmd.Env = e.environ(componentEnv + "=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if e.logs {
		f, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("kar-%d.log", rp)))
		if err == nil {
			cmd.Stdout, cmd.Stderr = f, f
		}
	}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start kar run: %w", err)
	}
	p.cmd = cmd
	go func() { cmd.Wait(); close(p.exited) }()
	e.mu.Lock()
	e.procs = append(e.procs, p)
	e.mu.Unlock()
	return p, nil
}

// Stop ends p as a user does (SIGTERM to kar, which stops its component
// and leaves the mesh), then kills its process group if it lingers.
func (e *Env) Stop(p *Proc) {
	if p.Exited() {
		return
	}
	syscall.Kill(p.PID(), syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
	}
	syscall.Kill(-p.PID(), syscall.SIGKILL)
	<-p.exited
}

// StopAll stops every process started, all at once.
func (e *Env) StopAll() {
	e.mu.Lock()
	procs := e.procs
	e.procs = nil
	e.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range procs {
		wg.Add(1)
		go func() { defer wg.Done(); e.Stop(p) }()
	}
	wg.Wait()
}

// WaitHealthy waits until the sidecar's health endpoint answers 200.
func (e *Env) WaitHealthy(ctx context.Context, p *Proc, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := e.client.Get(p.URL() + "/kar/v1/system/health")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.Exited() {
			return fmt.Errorf("kar run on port %d exited before it was healthy", p.RuntimePort)
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("kar run on port %d not healthy within %s: %v", p.RuntimePort, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Do sends one request and returns the status and body; a status of 300
// or more is an error.
func (e *Env) Do(method, url, contentType, body string) ([]byte, error) {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode >= 300 {
		return b, fmt.Errorf("%s %s: status %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	return b, nil
}

// Parallel runs f(i) for i in [0, n) with inflight calls at a time and
// returns the first error (after every call ended) and the count of
// failures.
func Parallel(n, inflight int, f func(i int) error) (failed int64, first error) {
	var next, fails atomic.Int64
	var once sync.Once
	var wg sync.WaitGroup
	for w := 0; w < min(inflight, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					fails.Add(1)
					once.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	return fails.Load(), first
}

// Snapshot is what the backends have done so far: Redis's commands by
// name (INFO commandstats, counting the commands scripts run), its
// memory and CPU, and the broker's requests by API key.
type Snapshot struct {
	At          time.Time
	RedisCmds   map[string]int64
	RedisMemory int64 // used_memory, bytes
	RedisCPU    float64
	KafkaReqs   map[int16]int64
}

// Snap takes a Snapshot.
func (e *Env) Snap(ctx context.Context) (Snapshot, error) {
	s := Snapshot{At: time.Now(), KafkaReqs: e.kafkaReqs.snapshot(), RedisCPU: procCPU(e.RedisPID())}
	info, err := e.rdb.Info(ctx, "commandstats", "memory").Result()
	if err != nil {
		return s, fmt.Errorf("INFO: %w", err)
	}
	s.RedisCmds = map[string]int64{}
	sc := bufio.NewScanner(strings.NewReader(info))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if rest, ok := strings.CutPrefix(line, "cmdstat_"); ok {
			name, stats, _ := strings.Cut(rest, ":")
			for _, kv := range strings.Split(stats, ",") {
				if v, ok := strings.CutPrefix(kv, "calls="); ok {
					s.RedisCmds[name], _ = strconv.ParseInt(v, 10, 64)
				}
			}
		} else if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			s.RedisMemory, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return s, nil
}

// Delta is the work between two snapshots, less the benchmark's own
// INFO commands.
type Delta struct {
	Seconds   float64
	RedisCmds map[string]int64
	RedisCPU  float64
	KafkaReqs map[string]int64
	Memory    int64
}

// Sub is s - before.
func (s Snapshot) Sub(before Snapshot) Delta {
	d := Delta{Seconds: s.At.Sub(before.At).Seconds(), RedisCmds: map[string]int64{}, KafkaReqs: map[string]int64{},
		RedisCPU: s.RedisCPU - before.RedisCPU, Memory: s.RedisMemory - before.RedisMemory}
	for k, v := range s.RedisCmds {
		if k == "info" {
			continue
		}
		if n := v - before.RedisCmds[k]; n > 0 {
			d.RedisCmds[k] = n
		}
	}
	for k, v := range s.KafkaReqs {
		if n := v - before.KafkaReqs[k]; n > 0 {
			d.KafkaReqs[kmsg.NameForKey(k)] = n
		}
	}
	return d
}

// RedisTotal is the count of Redis commands (scripts' own commands included).
func (d Delta) RedisTotal() int64 { return total(d.RedisCmds) }

// KafkaTotal is the count of broker requests.
func (d Delta) KafkaTotal() int64 { return total(d.KafkaReqs) }

func total(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// Per formats counts divided by div, largest first: "evalsha 2.00, get 1.00".
func Per(m map[string]int64, div float64) string {
	type kv struct {
		k string
		v int64
	}
	var l []kv
	for k, v := range m {
		l = append(l, kv{k, v})
	}
	sort.Slice(l, func(i, j int) bool { return l[i].v > l[j].v || l[i].v == l[j].v && l[i].k < l[j].k })
	var parts []string
	for _, x := range l {
		if f := float64(x.v) / div; f >= 0.005 {
			parts = append(parts, fmt.Sprintf("%s %.2f", strings.ToLower(x.k), f))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// RedisClients is the count of client connections Redis has, less the
// benchmark's own.
func (e *Env) RedisClients(ctx context.Context) (int, error) {
	s, err := e.rdb.ClientList(ctx).Result()
	if err != nil {
		return 0, err
	}
	n := strings.Count(s, "\n")
	if !strings.HasSuffix(s, "\n") && s != "" {
		n++
	}
	return n - int(e.rdb.PoolStats().TotalConns), nil
}

// freePort is a loopback port for a process the bench starts (package
// ports: below the ephemeral range, which the sidecars' connections use).
func freePort() (int, error) { return ports.Pick(nil, nil) }
