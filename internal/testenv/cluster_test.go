package testenv

import (
	"context"
	"slices"
	"testing"

	"github.com/redis/go-redis/v9"
)

// TestClusterAddressesStayPut: go-redis's cluster client appends the nodes
// it discovers to the Addrs slice it was given, in the array behind it,
// and so may any code handed RedisCluster's address lists. The lists must
// not move when it does: they once did (Replicas named one node twice, and
// a failover test watched the wrong node for a minute while the replica it
// should have watched had taken over).
func TestClusterAddressesStayPut(t *testing.T) {
	c := StartRedisCluster(t, 3, ClusterReplicas(1))
	addrs, replicas := slices.Clone(c.Addrs), slices.Clone(c.Replicas)
	_ = append(c.Addrs, "127.0.0.1:1")
	_ = append(c.Replicas, "127.0.0.1:2")
	ctx := context.Background()
	for range 3 {
		cl := c.Client(t)
		if err := cl.ForEachShard(ctx, func(ctx context.Context, n *redis.Client) error { return n.Ping(ctx).Err() }); err != nil {
			t.Fatalf("PING every node: %v", err)
		}
	}
	if !slices.Equal(c.Addrs, addrs) || !slices.Equal(c.Replicas, replicas) {
		t.Fatalf("addresses moved: primaries %v -> %v, replicas %v -> %v", addrs, c.Addrs, replicas, c.Replicas)
	}
}
