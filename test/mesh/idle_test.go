package mesh_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestIdleMeshDoesNotReadEveryMemberEverySecond: idle members of one
// application must not each read every member's record and every
// partition's lease every second (that was N² reads a second: a mesh of
// 200 idle members cost Redis thousands of commands and a core). Counted
// with Redis' own command statistics over 40 lease renewal rounds: the
// multi-key reads (membership reloads, orphan scans) stay about one a
// second for the whole application, whatever its size.
func TestIdleMeshDoesNotReadEveryMemberEverySecond(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	rdb := redisOf(t, b)
	const members = 5
	for range members {
		sidecarAlone(t, b, "idle")
	}
	keys := store.NewKeys("idle")
	testenv.Eventually(t, 20*time.Second, func() bool {
		n, _ := rdb.SCard(ctx, keys.Sidecars()).Result()
		return n == members
	}, "%d members registered", members)
	calls := func(cmd string) int {
		info, err := rdb.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatalf("redis: %v", err)
		}
		for _, line := range strings.Split(info, "\r\n") {
			if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
				n, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
				return n
			}
		}
		return 0
	}
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	// Each member renews its lease with one EVAL every KAR_LEASE_TTL/4
	// (250 ms here): 40 rounds are about 10 s.
	const rounds = 40
	testenv.Eventually(t, 60*time.Second, func() bool { return calls("eval") >= members*rounds }, "%d renewal rounds", rounds)
	mget, smembers := calls("mget"), calls("smembers")
	t.Logf("over %d renewal rounds of %d idle members: %d MGET, %d SMEMBERS", rounds, members, mget, smembers)
	// About one orphan scan a second (10) and a reload every 10 s per
	// member (5); every member every second would be 100.
	if mget > rounds/2 {
		t.Errorf("%d multi-key reads in %d rounds of %d idle members; want at most %d", mget, rounds, members, rounds/2)
	}
}
