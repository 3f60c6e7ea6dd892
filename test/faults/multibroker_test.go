package faults_test

import (
	"encoding/json"
	"maps"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestLeaderMoves (issue 15): the application on a three-broker cluster,
// under the mixed load of sync, async, promise and actor calls, while the
// leader of every partition of its mesh topic moves to another broker
// every 300 ms for sh.Down, as a rolling restart or a rebalance of a real
// cluster does. Producers and readers follow the leaders: no accepted
// request is lost, no call hangs, and no sidecar loses its lease or its
// partition (nobody adopts anything, every sidecar keeps the partition it
// had). The topic has three replicas at the broker.
func TestLeaderMoves(t *testing.T) {
	c := newCluster(t, "fleader", testenv.KafkaBrokers(3))
	s1 := c.server("server1", both)
	s2 := c.server("server2", both)
	caller := c.caller("caller")
	c.waitServing(caller, 2, 2)
	topic := kafka.Topic(c.app)
	if n := c.b.KafkaCluster().TopicInfo(topic).NumReplicas; n != 3 {
		t.Errorf("the mesh topic has %d replicas at the broker, want 3", n)
	}
	before := partitions(t, caller)
	moves := 0
	f := c.run(short, caller, func() {
		k := c.b.KafkaCluster()
		end := time.Now().Add(short.Down)
		for time.Now().Before(end) {
			for _, p := range k.PartitionInfos(topic) {
				if err := k.MoveTopicPartition(topic, p.Partition, (p.Leader+1)%3); err != nil {
					t.Errorf("move partition %d: %v", p.Partition, err)
					return
				}
				moves++
			}
			faultFor(300 * time.Millisecond)
		}
	}, expect{healthy: []*sidecar{s1, s2, caller}, servesAgain: []*sidecar{s1, s2}, dupFrac: 0.05})
	t.Logf("%d partition leader moves; %s", moves, f)
	if after := partitions(t, caller); !maps.Equal(before, after) {
		t.Errorf("sidecars and their partitions changed over the leader moves: %v before, %v after", before, after)
	}
	for _, s := range []*sidecar{s1, s2, caller} {
		for _, lost := range []string{"lease of a partition had expired", "lost the lease", "claimed a new partition", "adopted an orphaned partition"} {
			if strings.Contains(s.proc.Output(), lost) {
				t.Errorf("%s: %q in its log: a leader move cost a lease", s.name, lost)
			}
		}
	}
	c.finish()
}

// partitions maps the live sidecars' ids to their partitions, as caller
// sees them.
func partitions(t *testing.T, caller *sidecar) map[string]int32 {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get(caller.base + "/kar/v1/system/information/sidecars?format=json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]struct {
		Partition int32 `json:"partition"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	out := map[string]int32{}
	for id, e := range m {
		out[id] = e.Partition
	}
	return out
}
