package examples_test

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestThreeBrokers (issue 15) runs the hello world (examples/service-hello-js)
// and the events example (examples/events-js) on a three-broker
// Kafka-protocol cluster, with the leaders of the applications' topics
// (mesh topics and the event topic) moving from broker to broker all along:
// every greeting and every event arrives, once, in order, and the topics kar
// created have three replicas. Actors under load on three brokers are
// test/faults' TestLeaderMoves.
func TestThreeBrokers(t *testing.T) {
	b := testenv.Backend(t, testenv.KafkaBrokers(3))
	stop := moveLeaders(t, b.KafkaCluster(), kafka.Topic("hello3"), kafka.Topic("events3"), "numbers3")
	defer stop()

	t.Run("hello", func(t *testing.T) {
		dir := nodeExample(t, "service-hello-js")
		server := karRun(t, b, "server", dir, nil, "-app", "hello3", "-service", "greeter", "node", "server.js")
		server.WaitOutput(t, "greeter listening", 30*time.Second)
		client := karRun(t, b, "client", dir, nil, "-app", "hello3", "node", "client.js")
		code, err := client.Wait(60 * time.Second)
		if err != nil || code != 0 {
			t.Fatalf("client exit %d, %v; output:\n%s", code, err, client.Output())
		}
		if n := strings.Count(client.Output(), "[STDOUT] Hello John Doe!"); n != 2 {
			t.Errorf("client printed Hello John Doe! %d times, want 2:\n%s", n, client.Output())
		}
		threeReplicas(t, b.KafkaCluster(), kafka.Topic("hello3"))
	})

	t.Run("events", func(t *testing.T) {
		eventsFlow(t, b, "events3", []string{"EV_TOPIC=numbers3", "EV_COUNT=20", "EV_TIMEOUT=45"})
		threeReplicas(t, b.KafkaCluster(), kafka.Topic("events3"), "numbers3")
	})

	if n := stop(); n == 0 {
		t.Errorf("no partition leader moved during the test")
	}
}

// threeReplicas checks that topics have three replicas at the broker.
func threeReplicas(t *testing.T, k *kfake.Cluster, topics ...string) {
	t.Helper()
	for _, topic := range topics {
		if info := k.TopicInfo(topic); info == nil || info.NumReplicas != 3 {
			t.Errorf("topic %s: %+v at the broker, want 3 replicas", topic, info)
		}
	}
}

// moveLeaders moves the leader of every partition of topics to the next
// broker every 250 ms, from now until stop, which returns how many moves
// were made (topics that do not exist yet are skipped).
func moveLeaders(t *testing.T, k *kfake.Cluster, topics ...string) (stop func() int) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	moves := 0
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for _, topic := range topics {
				for _, p := range k.PartitionInfos(topic) {
					if err := k.MoveTopicPartition(topic, p.Partition, (p.Leader+1)%3); err != nil {
						t.Errorf("move %s/%d: %v", topic, p.Partition, err)
						return
					}
					moves++
				}
			}
		}
	}()
	var once sync.Once
	return func() int {
		once.Do(func() { close(done); wg.Wait() })
		return moves
	}
}
