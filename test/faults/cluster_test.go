package faults_test

import (
	"testing"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKillHostRedisCluster: TestKillHost's kill -9 of a server replica
// mid-load, with kar on a Redis Cluster of three primaries
// (REDIS_CLUSTER=true): the survivor adopts the dead one's partition (its
// lease and position in their own slot), the dead one's actor instances
// are placed again, every accepted request is executed and no call hangs.
func TestKillHostRedisCluster(t *testing.T) {
	c := newCluster(t, "fkillrc")
	c.backendEnv = testenv.StartRedisCluster(t, 3).Env()
	victim := c.server("victim", both)
	survivor := c.server("survivor", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	c.run(short, caller, func() { victim.proc.Kill() }, expect{healthy: []*sidecar{survivor, caller}, dupFrac: 0.25})
	c.finish()
}
