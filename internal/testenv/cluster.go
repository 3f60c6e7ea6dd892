package testenv

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/devenv"
)

// RedisCluster is a Redis Cluster of real redis-server processes in
// cluster mode, one primary each and no replicas, for the test.
type RedisCluster struct {
	// Addrs are the primaries' host:port, in the order they were started.
	Addrs []string
	// Replicas are the replicas' host:port (ClusterReplicas).
	Replicas []string
	procs    []*Proc
	opts     clusterOptions
}

// ClusterOption sets up a RedisCluster as a managed one is.
type ClusterOption func(*clusterOptions)

type clusterOptions struct {
	certs          *devenv.Certs
	user, password string
	replicas       int
}

// ClusterReplicas gives each primary n replicas, which take over when it
// fails (cluster-node-timeout 2 s).
func ClusterReplicas(n int) ClusterOption {
	return func(o *clusterOptions) { o.replicas = n }
}

// ClusterTLS serves the cluster over TLS only, clients and cluster bus
// alike (tls-cluster), with the server certificate of certs.
func ClusterTLS(certs *devenv.Certs) ClusterOption {
	return func(o *clusterOptions) { o.certs = certs }
}

// ClusterUser turns the default user off and lets user in with password.
func ClusterUser(user, password string) ClusterOption {
	return func(o *clusterOptions) { o.user, o.password = user, password }
}

// StartRedisCluster starts primaries redis-server processes with
// cluster-enabled on free loopback ports (each with its own temporary
// directory), joins them with `redis-cli --cluster create`, and waits
// until every node serves all 16384 slots. The processes are stopped by
// their PID when the test ends.
func StartRedisCluster(t testing.TB, primaries int, opts ...ClusterOption) *RedisCluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Fatalf("testenv: %s is not on PATH; install it (Debian: apt-get install redis-server): %v", bin, err)
		}
	}
	c := &RedisCluster{}
	for _, o := range opts {
		o(&c.opts)
	}
	for i := range primaries * (1 + c.opts.replicas) {
		c.startNode(t, i)
	}
	// redis-cli makes the first nodes listed the primaries. Each list
	// gets an array of its own, full: whoever appends to one (go-redis
	// does, to the Addrs it is given) must not write over the other.
	all := c.Addrs
	c.Addrs, c.Replicas = slices.Clip(all[:primaries]), slices.Clone(all[primaries:])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, all...)
	args = append(args, "--cluster-replicas", strconv.Itoa(c.opts.replicas), "--cluster-yes")
	if c.opts.certs != nil {
		args = append(args, "--tls", "--cacert", c.opts.certs.CAFile)
	}
	if c.opts.user != "" {
		args = append(args, "--user", c.opts.user)
	}
	cmd := exec.CommandContext(ctx, "redis-cli", args...)
	if c.opts.password != "" {
		// In the environment, not on the command line (ps shows it).
		cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+c.opts.password)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range all {
		Eventually(t, 30*time.Second, func() bool {
			cl := c.node(a)
			defer cl.Close()
			info, err := cl.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_assigned:16384") &&
				strings.Contains(info, "cluster_known_nodes:"+strconv.Itoa(len(all))+"\r")
		}, "node %s to see the whole cluster", a)
	}
	for _, a := range c.Replicas {
		Eventually(t, 30*time.Second, func() bool {
			cl := c.node(a)
			defer cl.Close()
			info, err := cl.Info(ctx, "replication").Result()
			return err == nil && strings.Contains(info, "master_link_status:up")
		}, "replica %s to be in sync", a)
	}
	return c
}

// startNode starts primary i on two free ports (clients and cluster bus)
// and waits until it answers. A free port can be taken by another process
// between the probe and redis-server's bind (other tests run beside this
// one): then the node starts again on new ports.
func (c *RedisCluster) startNode(t testing.TB, i int) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port, busPort := FreePort(t), FreePort(t)
		conf := strings.Join(append(c.opts.config(port), []string{
			"bind 127.0.0.1",
			"cluster-enabled yes",
			"cluster-port " + strconv.Itoa(busPort),
			"cluster-config-file nodes.conf",
			"cluster-node-timeout 2000",
			// A test's cluster loses nothing it needs when a node goes.
			"cluster-require-full-coverage no",
			// A replica takes over however long it was out of touch (a
			// loaded test machine delays its pings).
			"cluster-replica-validity-factor 0",
			"dir " + strconv.Quote(dir),
			`save ""`,
			"appendonly no",
			"protected-mode no",
			"loglevel warning",
		}...), "\n") + "\n"
		path := filepath.Join(dir, "redis.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		addr := "127.0.0.1:" + strconv.Itoa(port)
		p := Start(t, fmt.Sprintf("redis-cluster-%d", i), nil, dir, "redis-server", path)
		Eventually(t, 20*time.Second, func() bool {
			if p.Exited() {
				return true
			}
			cl := c.node(addr)
			defer cl.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			return cl.Ping(ctx).Err() == nil
		}, "redis-server %s to answer", addr)
		if !p.Exited() {
			c.procs = append(c.procs, p)
			c.Addrs = append(c.Addrs, addr)
			return
		}
		if !strings.Contains(p.Output(), "Address already in use") || attempt == 5 {
			t.Fatalf("testenv: redis-server %s exited at start:\n%s", addr, p.Output())
		}
	}
}

// config is the TLS and ACL part of a node's configuration.
func (o clusterOptions) config(port int) []string {
	var out []string
	if o.certs != nil {
		out = append(out, "port 0", "tls-port "+strconv.Itoa(port), "tls-cluster yes",
			"tls-cert-file "+strconv.Quote(o.certs.CertFile), "tls-key-file "+strconv.Quote(o.certs.KeyFile),
			"tls-ca-cert-file "+strconv.Quote(o.certs.CAFile), "tls-auth-clients no")
	} else {
		out = append(out, "port "+strconv.Itoa(port))
	}
	if o.user != "" {
		out = append(out, "user default off", "user "+o.user+" on "+strconv.Quote(">"+o.password)+" ~* &* +@all")
	}
	return out
}

// Env is what a kar process needs to use the cluster.
func (c *RedisCluster) Env() []string {
	env := []string{"REDIS_CLUSTER=true", "REDIS_HOST=" + strings.Join(c.Addrs, ","), "REDIS_PORT=6379"}
	if c.opts.certs != nil {
		env = append(env, "REDIS_ENABLE_TLS=true", "REDIS_CA="+c.opts.certs.CABase64())
	}
	if c.opts.user != "" {
		env = append(env, "REDIS_USER="+c.opts.user, "REDIS_PASSWORD="+c.opts.password)
	}
	return env
}

// tls is the client TLS settings for the cluster (nil without TLS).
func (c *RedisCluster) tls() *tls.Config {
	if c.opts.certs == nil {
		return nil
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.opts.certs.CAPEM)
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func (c *RedisCluster) node(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, TLSConfig: c.tls(), Username: c.opts.user, Password: c.opts.password})
}

// Client returns a cluster client, closed when the test ends.
func (c *RedisCluster) Client(t testing.TB) *redis.ClusterClient {
	// A copy: the client appends the nodes it finds to its Addrs.
	cl := redis.NewClusterClient(&redis.ClusterOptions{Addrs: slices.Clone(c.Addrs), TLSConfig: c.tls(), Username: c.opts.user, Password: c.opts.password})
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Node returns a client of primary i alone (no redirections followed),
// closed when the test ends.
func (c *RedisCluster) Node(t testing.TB, i int) *redis.Client {
	cl := c.node(c.Addrs[i])
	t.Cleanup(func() { cl.Close() })
	return cl
}

// ReplicaNode returns a client of replica i alone, closed when the test
// ends.
func (c *RedisCluster) ReplicaNode(t testing.TB, i int) *redis.Client {
	cl := c.node(c.Replicas[i])
	t.Cleanup(func() { cl.Close() })
	return cl
}

// PIDs are the process ids of the primaries, in the order of Addrs.
func (c *RedisCluster) PIDs() []int {
	out := make([]int, len(c.Addrs))
	for i := range c.Addrs {
		out[i] = c.procs[i].PID()
	}
	return out
}

// KillPrimaryOf kills (-9) the primary that serves key's slot and returns
// its address.
func (c *RedisCluster) KillPrimaryOf(t testing.TB, key string) string {
	t.Helper()
	cl := c.Client(t)
	ctx := context.Background()
	slot, err := cl.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("testenv: CLUSTER KEYSLOT: %v", err)
	}
	ranges, err := cl.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("testenv: CLUSTER SLOTS: %v", err)
	}
	for _, r := range ranges {
		if int64(r.Start) <= slot && slot <= int64(r.End) && len(r.Nodes) > 0 {
			addr := r.Nodes[0].Addr
			for i, a := range append(append([]string{}, c.Addrs...), c.Replicas...) {
				if a == addr {
					c.procs[i].Kill()
					return addr
				}
			}
			t.Fatalf("testenv: slot %d is served by %s, not one of ours", slot, addr)
		}
	}
	t.Fatalf("testenv: no node serves slot %d", slot)
	return ""
}
