package mesh_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/redis/go-redis/v9"
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
	calls := func(cmd string) int { return redisCalls(t, rdb, cmd) }
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	// Each member renews its lease with one EVAL every KAR_LEASE_TTL/4
	// (250 ms here): 40 rounds are about 10 s.
	const rounds = 40
	testenv.Eventually(t, 60*time.Second, func() bool { return calls("eval") >= members*rounds }, "%d renewal rounds", rounds)
	mget, smembers, zadd := calls("mget"), calls("smembers"), calls("zadd")
	t.Logf("over %d renewal rounds of %d idle members: %d MGET, %d SMEMBERS, %d ZADD", rounds, members, mget, smembers, zadd)
	// Without a subscription the event runners keep no heartbeat (it was
	// a ZADD a second per member).
	if zadd != 0 {
		t.Errorf("%d event runner heartbeats in an application without subscriptions", zadd)
	}
	// About one orphan scan a second (10) and a reload every 10 s per
	// member (5); every member every second would be 100.
	if mget > rounds/2 {
		t.Errorf("%d multi-key reads in %d rounds of %d idle members; want at most %d", mget, rounds, members, rounds/2)
	}
}

// TestOnePubSubConnectionPerSidecar: a sidecar hears membership notices,
// reminder and subscription wake-ups on one Redis connection (go-redis gives
// each PubSub its own, with 64 KiB of buffers; a sidecar had three).
func TestOnePubSubConnectionPerSidecar(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	rdb := redisOf(t, b)
	const members = 3
	for range members {
		sidecarAlone(t, b, "onesub")
	}
	// Each subscribed connection, by the number of channels it has.
	subscribed := func() map[string]int {
		list, err := rdb.ClientList(ctx).Result()
		if err != nil {
			t.Fatalf("redis: %v", err)
		}
		conns := map[string]int{}
		for _, line := range strings.Split(list, "\n") {
			for _, f := range strings.Fields(line) {
				if n, ok := strings.CutPrefix(f, "sub="); ok && n != "0" {
					conns[n]++
				}
			}
		}
		return conns
	}
	var last map[string]int
	testenv.Eventually(t, 20*time.Second, func() bool {
		last = subscribed()
		return last["3"] == members
	}, "%d connections subscribed to the three channels", members)
	if len(last) != 1 {
		t.Errorf("subscribed connections by channel count: %v; want %d with 3 and no other", last, members)
	}
}

// TestJoinsCarryTheirRecord: a member that joins announces its record, and
// the others add it to their view from the notice. Before, every notice
// made every member read every record again: N² reads for each join, and
// a mesh of hundreds of members churning was millions of reads.
func TestJoinsCarryTheirRecord(t *testing.T) {
	b := testenv.Backend(t)
	ctx := context.Background()
	rdb := redisOf(t, b)
	const first, later = 4, 4
	var bases []string
	for range first {
		_, base := sidecarAlone(t, b, "joins")
		bases = append(bases, base)
	}
	keys := store.NewKeys("joins")
	members := func(n int) func() bool {
		return func() bool { c, _ := rdb.SCard(ctx, keys.Sidecars()).Result(); return int(c) == n }
	}
	testenv.Eventually(t, 20*time.Second, members(first), "%d members registered", first)
	if err := rdb.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatalf("redis: %v", err)
	}
	start := time.Now()
	for range later {
		_, base := sidecarAlone(t, b, "joins")
		bases = append(bases, base)
	}
	// Every member sees every other.
	for _, base := range bases {
		testenv.Eventually(t, 20*time.Second, func() bool {
			resp, got := do(t, "GET", base+"/kar/v1/system/information/sidecars", http.Header{"Accept": {"application/json"}}, "")
			var info map[string]any
			return resp.StatusCode == 200 && json.Unmarshal([]byte(got), &info) == nil && len(info) == first+later
		}, "%s sees %d members", base, first+later)
	}
	reads := redisCalls(t, rdb, "smembers")
	took := time.Since(start)
	// Each joiner reads the members once or twice as it starts, and
	// everyone reloads every 10 s; a whole reload per notice would be
	// 4+5+6+7 = 22 more.
	polls := (first + later) * (int(took/(10*time.Second)) + 1)
	t.Logf("%d joins over %v: %d member-set reads (%d allowed)", later, took.Round(time.Millisecond), reads, 2*later+polls)
	if reads > 2*later+polls {
		t.Errorf("%d member-set reads for %d joins to %d members", reads, later, first)
	}
}

// redisCalls is how many times Redis ran cmd since its statistics were
// reset.
func redisCalls(t *testing.T, rdb redis.UniversalClient, cmd string) int {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
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
