package faults_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKillHost: kill -9 mid-load of a server replica (sidecar and its
// component, serving the service and the actor type) while a second
// replica lives, and of one of two actor hosts: the survivor adopts the
// dead one's partition and its actor instances are placed again; every
// accepted request is executed and no call hangs.
func TestKillHost(t *testing.T) {
	for _, tc := range []struct {
		name   string
		victim hosts
	}{
		{"server-sidecar", both},
		{"actor-host", actorsOnly},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t, "fkill"+strings.ReplaceAll(tc.name, "-", ""))
			services := 2
			if !tc.victim.service {
				c.server("service", hosts{service: true})
				services = 1
			}
			victim := c.server("victim", tc.victim)
			survivor := c.server("survivor", tc.victim)
			caller := c.caller("caller")
			c.waitServing(caller, services, 2)
			c.run(short, caller, func() { victim.proc.Kill() }, expect{healthy: []*sidecar{survivor, caller}, dupFrac: 0.25})
			c.finish()
		})
	}
}

// TestKillComponent: kill -9 of a component only; its sidecar stays, and
// the component is back 2 s later: nothing accepted is lost, no call
// hangs, and the sidecar serves again without a restart.
func TestKillComponent(t *testing.T) {
	c := newCluster(t, "fkillcomp")
	victim := c.separate("victim", both)
	survivor := c.server("survivor", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	c.run(short, caller, func() {
		victim.comp.Kill()
		faultFor(2 * time.Second)
		c.startComponent(victim)
	}, expect{healthy: []*sidecar{victim, survivor, caller}, dupFrac: 0.25})
	c.waitServing(caller, 2, 2)
	c.finish()
}

// redisHealth is the fix the Redis scenarios' health check waits for.
const redisHealth = "issue 10: a sidecar cut from Redis for longer than a lease must say so on its health endpoint " +
	"(a renewal blocks ~2 s in go-redis's dial retries, so a 3 s outage shows one failed renewal and never a lease's lifetime of them)"

// TestRedisRestart: redis-server killed (-9) and restarted 3 s later with
// its data (AOF, fsync always) under 24 calls in flight. Issue 10 defect
// 1: a sync call or an await hung for ever when its caller's sidecar had
// lost its lease meanwhile.
func TestRedisRestart(t *testing.T) {
	c := newCluster(t, "fredis", testenv.DataDir(t.TempDir()))
	s1 := c.server("server1", both)
	s2 := c.server("server2", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	c.run(short, caller, func() {
		if err := c.b.StopRedis(true); err != nil {
			t.Fatal(err)
		}
		faultFor(3 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.b.StartRedis(ctx); err != nil {
			t.Fatal(err)
		}
	}, expect{
		pending: map[string]string{
			"unhealthy": redisHealth,
			"duplicates": "issue 10 (smaller): cut the duplicates after a Redis outage " +
				"(124 to 297 of 300 to 500 accepted requests ran twice, nearly all calls that ended during the outage)",
		},
		unhealthy:   []*sidecar{s1, s2, caller},
		healthy:     []*sidecar{s1, s2, caller},
		servesAgain: []*sidecar{s1, s2},
		dupFrac:     0.25,
	})
	c.finish()
}

// TestBrokerRestart: the broker stopped and started again 2 s later,
// EMPTY, as a cluster that lost the application's topic. Issue 10 defect
// 2: sidecars never recreated their topic (every call 503 until a new
// sidecar joined) and said OK on their health endpoint throughout.
// Requests the broker held when it went are lost with it; those accepted
// after it came back must all run.
func TestBrokerRestart(t *testing.T) {
	c := newCluster(t, "fbroker")
	s1 := c.server("server1", both)
	s2 := c.server("server2", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	var back time.Time
	c.run(short, caller, func() {
		c.b.StopKafka()
		faultFor(2 * time.Second)
		if err := c.b.StartKafka(); err != nil {
			t.Fatal(err)
		}
		back = time.Now()
	}, expect{
		pending: map[string]string{
			"hung": "issue 10 defect 2: a call in flight when the broker went, its request lost with the broker, " +
				"must be sent again or end (1 run in 3: 2 awaits and a sync call hung, never executed)",
		},
		unhealthy:   []*sidecar{s1, s2, caller},
		healthy:     []*sidecar{s1, s2, caller},
		servesAgain: []*sidecar{s1, s2},
		dupFrac:     0.25,
		mustRun:     func(r result) bool { return r.at.After(back) },
	})
	c.finish()
}

// TestNetworkCut: the network between one sidecar (a server, or the
// caller) and Redis or Kafka cut for 3 s (longer than a lease), then
// restored; the backend itself keeps everything. Nothing accepted is
// lost, nothing hangs, the cut sidecar says it cannot serve meanwhile
// (health not 200) and serves again on its own. A server cut from Redis
// loses its lease and the others adopt its partition; a caller cut from
// Redis is issue 10's defect 1 again: the answers to its old partition
// must still reach it.
func TestNetworkCut(t *testing.T) {
	for _, tc := range []struct {
		backend, who string
		pending      map[string]string
	}{
		{"redis", "server", map[string]string{"unhealthy": redisHealth}},
		{"redis", "caller", map[string]string{"unhealthy": redisHealth}},
		{"kafka", "server", nil},
		{"kafka", "caller", nil},
	} {
		t.Run(tc.backend+"-"+tc.who, func(t *testing.T) {
			c := newCluster(t, "fcut"+tc.backend+tc.who)
			var p *testenv.Proxy
			var via []string
			if tc.backend == "redis" {
				p = testenv.StartProxy(t, c.b.RedisAddr())
				host, port := p.HostPort()
				via = []string{"REDIS_HOST=" + host, "REDIS_PORT=" + port}
			} else {
				p = testenv.StartKafkaProxy(t, c.b.KafkaBrokers())
				via = []string{"KAFKA_BROKERS=" + p.Addr()}
			}
			victim, other, caller := cutOne(c, tc.who, via)
			c.waitServing(caller, 2, 2)
			e := expect{
				pending:   tc.pending,
				unhealthy: []*sidecar{victim},
				healthy:   []*sidecar{victim, other, caller},
				dupFrac:   0.25,
			}
			if tc.who == "server" {
				e.servesAgain = []*sidecar{victim}
			}
			c.run(short, caller, func() {
				p.Cut()
				faultFor(3 * time.Second)
				p.Restore()
			}, e)
			c.finish()
		})
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
