package faults_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// A scenario starts an application's processes, runs the load through a
// fault of sh.Down and checks the outcome; it returns the cluster (whose
// finish skips what waits for a fix) and the figures.
type scenario func(t *testing.T, sh shape) (*cluster, figures)

// scenarios is the fault matrix: the CI tests below and TestLong run it.
func scenarios() []struct {
	name string
	run  scenario
} {
	return []struct {
		name string
		run  scenario
	}{
		{"kill-server-sidecar", killHost(both)},
		{"kill-actor-host", killHost(actorsOnly)},
		{"kill-component", killComponent},
		{"redis-restart", redisRestart},
		{"broker-restart", brokerRestart},
		{"cut-redis-server", networkFault(cut, "redis", "server")},
		{"cut-redis-caller", networkFault(cut, "redis", "caller")},
		{"cut-kafka-server", networkFault(cut, "kafka", "server")},
		{"cut-kafka-caller", networkFault(cut, "kafka", "caller")},
		{"stall-redis-server", networkFault(stall, "redis", "server")},
		{"stall-redis-caller", networkFault(stall, "redis", "caller")},
		{"stall-kafka-server", networkFault(stall, "kafka", "server")},
		{"stall-kafka-caller", networkFault(stall, "kafka", "caller")},
	}
}

// runScenarios runs the named scenarios in CI's short shape, each as a
// subtest when there are several.
func runScenarios(t *testing.T, names ...string) {
	for _, sc := range scenarios() {
		if !slices.Contains(names, sc.name) {
			continue
		}
		if len(names) == 1 {
			c, _ := sc.run(t, short)
			c.finish()
			return
		}
		t.Run(sc.name, func(t *testing.T) {
			c, _ := sc.run(t, short)
			c.finish()
		})
	}
}

// TestKillHost: kill -9 mid-load of a server replica (sidecar and its
// component, serving the service and the actor type) while a second
// replica lives, and of one of two actor hosts: the survivor adopts the
// dead one's partition and its actor instances are placed again; every
// accepted request is executed and no call hangs.
func TestKillHost(t *testing.T) { runScenarios(t, "kill-server-sidecar", "kill-actor-host") }

func killHost(victimHosts hosts) scenario {
	return func(t *testing.T, sh shape) (*cluster, figures) {
		name := "fkillserver"
		services := 2
		if !victimHosts.service {
			name, services = "fkillactor", 1
		}
		c := newCluster(t, name)
		if !victimHosts.service {
			c.server("service", hosts{service: true})
		}
		victim := c.server("victim", victimHosts)
		survivor := c.server("survivor", victimHosts)
		caller := c.caller("caller")
		c.waitServing(caller, services, 2)
		f := c.run(sh, caller, func() { victim.proc.Kill() }, expect{healthy: []*sidecar{survivor, caller}, dupFrac: 0.25})
		return c, f
	}
}

// TestKillComponent: kill -9 of a component only; its sidecar stays, and
// the component is back 4 s later.
func TestKillComponent(t *testing.T) { runScenarios(t, "kill-component") }

// killComponent: kill -9 of a component only; its sidecar stays, and the
// component is back sh.Down later: nothing accepted is lost, no call
// hangs, and the sidecar serves again without a restart.
func killComponent(t *testing.T, sh shape) (*cluster, figures) {
	c := newCluster(t, "fkillcomp")
	victim := c.separate("victim", both)
	survivor := c.server("survivor", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	f := c.run(sh, caller, func() {
		victim.comp.Kill()
		faultFor(sh.Down)
		c.startComponent(victim)
	}, expect{healthy: []*sidecar{victim, survivor, caller}, servesAgain: []*sidecar{victim}, dupFrac: 0.25})
	return c, f
}

// TestRedisRestart: redis-server killed (-9) and restarted sh.RedisDown later
// with its data (AOF, fsync always) under 24 calls in flight. Issue 10
// defect 1: a sync call or an await hung for ever when its caller's
// sidecar had lost its lease meanwhile.
func TestRedisRestart(t *testing.T) { runScenarios(t, "redis-restart") }

func redisRestart(t *testing.T, sh shape) (*cluster, figures) {
	c := newCluster(t, "fredis", testenv.DataDir(t.TempDir()))
	s1 := c.server("server1", both)
	s2 := c.server("server2", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	f := c.run(sh, caller, func() {
		if err := c.b.StopRedis(true); err != nil {
			t.Fatal(err)
		}
		faultFor(sh.RedisDown)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.b.StartRedis(ctx); err != nil {
			t.Fatal(err)
		}
	}, expect{
		unhealthy:   []*sidecar{s1, s2, caller},
		healthy:     []*sidecar{s1, s2, caller},
		servesAgain: []*sidecar{s1, s2},
		// Owners take their leases back after an outage; nobody adopts
		// (824caac: hundreds of duplicates before).
		dupFrac: 0.05,
	})
	return c, f
}

// TestBrokerRestart: the broker stopped and started again sh.Down later,
// EMPTY, as a cluster that lost the application's topic. Issue 10 defect
// 2: sidecars never recreated their topic (every call 503 until a new
// sidecar joined) and said OK on their health endpoint throughout.
// Requests the broker held when it went are lost with it; those accepted
// after it came back must all run.
func TestBrokerRestart(t *testing.T) { runScenarios(t, "broker-restart") }

func brokerRestart(t *testing.T, sh shape) (*cluster, figures) {
	c := newCluster(t, "fbroker")
	s1 := c.server("server1", both)
	s2 := c.server("server2", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	var back time.Time
	f := c.run(sh, caller, func() {
		c.b.StopKafka()
		faultFor(sh.Down)
		if err := c.b.StartKafka(); err != nil {
			t.Fatal(err)
		}
		back = time.Now()
	}, expect{
		unhealthy:   []*sidecar{s1, s2, caller},
		healthy:     []*sidecar{s1, s2, caller},
		servesAgain: []*sidecar{s1, s2},
		dupFrac:     0.25,
		mustRun:     func(r result) bool { return r.at.After(back) },
	})
	return c, f
}

// TestNetworkCut: the network between one sidecar (a server, or the
// caller) and Redis or Kafka cut for sh.Down (longer than a lease), then
// restored; the backend itself keeps everything. Nothing accepted is
// lost, nothing hangs, the cut sidecar says it cannot serve meanwhile
// (health not 200) and serves again on its own. A server cut from Redis
// loses its lease and the others adopt its partition; a caller cut from
// Redis is issue 10's defect 1 again: the answers to its old partition
// must still reach it.
func TestNetworkCut(t *testing.T) {
	runScenarios(t, "cut-redis-server", "cut-redis-caller", "cut-kafka-server", "cut-kafka-caller")
}

// TestNetworkStall: as TestNetworkCut, but the network is silent rather
// than broken (a partition: no reset, no byte through, then the bytes
// held are delivered when it heals), which only timeouts reveal.
func TestNetworkStall(t *testing.T) {
	runScenarios(t, "stall-redis-server", "stall-redis-caller", "stall-kafka-server", "stall-kafka-caller")
}

// netFault is how the network between a sidecar and a backend fails.
type netFault int

const (
	cut   netFault = iota // connections reset, new ones refused
	stall                 // silence, then the held bytes
)

func networkFault(mode netFault, backend, who string) scenario {
	return func(t *testing.T, sh shape) (*cluster, figures) {
		c := newCluster(t, fmt.Sprintf("fnet%d%s%s", mode, backend, who))
		var p *testenv.Proxy
		var via []string
		if backend == "redis" {
			p = testenv.StartProxy(t, c.b.RedisAddr())
			host, port := p.HostPort()
			via = []string{"REDIS_HOST=" + host, "REDIS_PORT=" + port}
		} else {
			p = testenv.StartKafkaProxy(t, c.b.KafkaBrokers())
			via = []string{"KAFKA_BROKERS=" + p.Addr()}
		}
		victim, other, caller := cutOne(c, who, via)
		c.waitServing(caller, 2, 2)
		e := expect{
			unhealthy: []*sidecar{victim},
			healthy:   []*sidecar{victim, other, caller},
			dupFrac:   0.25,
		}
		if who == "server" {
			e.servesAgain = []*sidecar{victim}
		}
		f := c.run(sh, caller, func() {
			if mode == cut {
				p.Cut()
			} else {
				p.Stall()
			}
			faultFor(sh.Down)
			p.Restore()
		}, e)
		return c, f
	}
}

// cutOne starts two server replicas and a caller, the one named by who
// ("server" or "caller") with extra environment via (its backend through a
// proxy), and returns it, the other server and the caller.
func cutOne(c *cluster, who string, via []string) (victim, other, caller *sidecar) {
	c.t.Helper()
	if who == "server" {
		victim = c.server("victim", both, via...)
		caller = c.caller("caller")
	} else {
		c.server("server1", both)
		victim = c.caller("caller", via...)
		caller = victim
	}
	other = c.server("server2", both)
	return victim, other, caller
}
