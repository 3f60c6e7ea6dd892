package kafka

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// Kafka with replication (issue 15): what kar asks of a cluster of several
// brokers, read back at the broker, so that a setting dropped on the way
// fails here.

func connectTo(t *testing.T, b *devenv.Backend, app string, cfg config.Backend) *Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg.KafkaBrokers = strings.Split(b.KafkaBrokers(), ",")
	if cfg.KafkaVersion == "" {
		cfg.KafkaVersion = "2.8.0"
	}
	c, err := Connect(ctx, cfg, app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Every topic kar creates (the mesh topic, the dead-letter topic, an event
// topic through the API, one created on first use) gets the cluster's
// replication factor, min(3, brokers) unless -kafka_replication_factor
// says otherwise, and min.insync.replicas=2 from 3 replicas on, unless the
// topic's settings name it.
func TestTopicsTakeTheClusterReplication(t *testing.T) {
	cases := []struct {
		name       string
		brokers    int
		setting    int
		replicas   int
		minInSync  string // "" : the broker's default
		errSays    string // creation refused, saying so
		userMinISR string // min.insync.replicas the API's caller gives
	}{
		{name: "one broker", brokers: 1, replicas: 1},
		{name: "two brokers", brokers: 2, replicas: 2},
		{name: "three brokers", brokers: 3, replicas: 3, minInSync: "2"},
		{name: "setting below the cluster", brokers: 3, setting: 2, replicas: 2},
		{name: "caller's min.insync.replicas kept", brokers: 3, replicas: 3, minInSync: "2", userMinISR: "3"},
		{name: "setting above the cluster", brokers: 3, setting: 4, errSays: "4 replicas on a cluster of 3 brokers (set -kafka_replication_factor"},
	}
	// The API's caller who asks for more replicas than brokers is told so,
	// and not pointed at a setting that was not used.
	t.Run("caller above the cluster", func(t *testing.T) {
		b := testenv.Backend(t, testenv.KafkaBrokers(2), testenv.EmbeddedRedis())
		c := connectTo(t, b, "repl", config.Backend{})
		_, err := c.CreateTopic(context.Background(), "big", TopicOptions{ReplicationFactor: 3})
		if !errors.Is(err, sarama.ErrInvalidReplicationFactor) || !strings.Contains(err.Error(), "3 replicas on a cluster of 2 brokers") || strings.Contains(err.Error(), "-kafka_replication_factor") {
			t.Errorf("CreateTopic with 3 replicas on 2 brokers: %v", err)
		}
	})
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := testenv.Backend(t, testenv.KafkaBrokers(tc.brokers), testenv.EmbeddedRedis())
			const app = "repl"
			c := connectTo(t, b, app, config.Backend{KafkaReplicationFactor: tc.setting})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, meshErr := c.EnsureTopic(ctx, Topic(app), 2)
			_, deadErr := c.EnsureTopic(ctx, DeadLetterTopic(app), 1)
			_, usedErr := c.EnsureTopic(ctx, EventTopic("used"), 1)
			o := TopicOptions{NumPartitions: 2}
			if tc.userMinISR != "" {
				o.ConfigEntries = map[string]*string{"min.insync.replicas": &tc.userMinISR}
			}
			_, apiErr := c.CreateTopic(ctx, EventTopic("created"), o)
			for i, err := range []error{meshErr, deadErr, usedErr, apiErr} {
				topic := []string{Topic(app), DeadLetterTopic(app), "used", "created"}[i]
				if tc.errSays != "" {
					if err == nil || !strings.Contains(err.Error(), tc.errSays) {
						t.Errorf("%s: %v; want an error saying %q", topic, err, tc.errSays)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", topic, err)
				}
				info := b.KafkaCluster().TopicInfo(topic)
				if info.NumReplicas != tc.replicas {
					t.Errorf("%s: %d replicas at the broker, want %d", topic, info.NumReplicas, tc.replicas)
				}
				want := tc.minInSync
				if topic == "created" && tc.userMinISR != "" {
					want = tc.userMinISR
				}
				got := ""
				if v := info.Configs["min.insync.replicas"]; v != nil {
					got = *v
				}
				if got != want {
					t.Errorf("%s: min.insync.replicas %q at the broker, want %q", topic, got, want)
				}
			}
		})
	}
}

// produceSeen records what the broker saw of the produce requests.
type produceSeen struct {
	mu        sync.Mutex
	acks      []int16
	producers []int64 // producer id of each record batch (-1: not idempotent)
}

// observeProduce watches every produce request the cluster answers.
func observeProduce(k *kfake.Cluster) *produceSeen {
	s := &produceSeen{}
	k.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Count: -1, Observe: true, When: func(r kmsg.Request) bool {
		req := r.(*kmsg.ProduceRequest)
		s.mu.Lock()
		defer s.mu.Unlock()
		s.acks = append(s.acks, req.Acks)
		for _, tp := range req.Topics {
			for _, p := range tp.Partitions {
				var batch kmsg.RecordBatch
				if batch.ReadFrom(p.Records) == nil {
					s.producers = append(s.producers, batch.ProducerID)
				}
			}
		}
		return true
	}})
	return s
}

func (s *produceSeen) get() (acks []int16, producers []int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acks), slices.Clone(s.producers)
}

// kar's records reach the broker with acks=all (-1) and, unless told
// otherwise, from an idempotent producer (a producer id on every batch).
func TestProduceAcksAllAndIdempotent(t *testing.T) {
	b := testenv.Backend(t, testenv.KafkaBrokers(3), testenv.EmbeddedRedis())
	seen := observeProduce(b.KafkaCluster())
	for _, tc := range []struct {
		name       string
		cfg        config.Backend
		idempotent bool
	}{
		{"default", config.Backend{}, true},
		{"-kafka_no_idempotence", config.Backend{KafkaNoIdempotence: true}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := connectTo(t, b, "acks", tc.cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			topic := "acks-" + strings.NewReplacer(" ", "", ".", "", "-", "").Replace(tc.name)
			if _, err := c.EnsureTopic(ctx, topic, 1); err != nil {
				t.Fatal(err)
			}
			acks0, ps0 := seen.get()
			for i := range 3 {
				if err := c.Produce(ctx, topic, 0, []byte(strconv.Itoa(i))); err != nil {
					t.Fatal(err)
				}
			}
			acks, ps := seen.get()
			acks, ps = acks[len(acks0):], ps[len(ps0):]
			if len(acks) == 0 || len(ps) == 0 {
				t.Fatalf("the broker saw no produce request")
			}
			for _, a := range acks {
				if a != -1 {
					t.Errorf("a produce request with acks=%d, want -1 (all)", a)
				}
			}
			for _, id := range ps {
				if got := id >= 0; got != tc.idempotent {
					t.Errorf("a record batch of producer id %d: idempotent=%v, want %v", id, got, tc.idempotent)
				}
			}
		})
	}
}

// A partition's leader moving to another broker while records are written
// and read: the producer and the reader follow it (sarama on
// NotLeaderForPartition, the reader by looking the leader up again), no
// record is lost, duplicated or reordered, and the reader does not take the
// move for a topic created again (its topic-id check).
func TestLeaderMovesUnderLoad(t *testing.T) {
	const topic, parts, perPart = "moving", 3, 60
	k, c, ctx := onThreeBrokers(t, topic, parts)
	var mu sync.Mutex
	got := map[int32][]string{}
	errs, resets := 0, 0
	for p := range int32(parts) {
		r := c.ReadPartitionWith(topic, p, 0, ReadOptions{
			Handle: func(_ int64, v []byte) {
				mu.Lock()
				got[p] = append(got[p], string(v))
				mu.Unlock()
			},
			Error: func(err error) {
				mu.Lock()
				errs++
				mu.Unlock()
			},
			OutOfRange: func(int64, int64) {
				mu.Lock()
				resets++
				mu.Unlock()
			},
		})
		defer r.Close()
	}
	// Writers on every partition at once, as sidecars are; every tenth
	// record a writer moves its partition's leader to the next broker, so
	// the next produce meets a broker that no longer leads it.
	var wg sync.WaitGroup
	werr := make(chan error, parts)
	leaders := make([]int32, parts)
	for p := range int32(parts) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perPart {
				if i%10 == 5 {
					leaders[p] = (k.LeaderFor(topic, p) + 1) % 3
					if err := k.MoveTopicPartition(topic, p, leaders[p]); err != nil {
						werr <- err
						return
					}
				}
				if err := c.Produce(ctx, topic, p, []byte(fmt.Sprintf("%d-%d", p, i))); err != nil {
					werr <- fmt.Errorf("produce %d-%d: %w", p, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(werr)
	for err := range werr {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, vs := range got {
			n += len(vs)
		}
		return n >= parts*perPart
	}, "every record read")
	mu.Lock()
	defer mu.Unlock()
	for p := range int32(parts) {
		want := make([]string, perPart)
		for i := range want {
			want[i] = fmt.Sprintf("%d-%d", p, i)
		}
		if !slices.Equal(got[p], want) {
			t.Errorf("partition %d read %d records %v..., want %d in order", p, len(got[p]), got[p][:min(5, len(got[p]))], perPart)
		}
		if l := k.LeaderFor(topic, p); l != leaders[p] {
			t.Errorf("partition %d led by %d, want %d (the last move)", p, l, leaders[p])
		}
	}
	if errs == 0 {
		t.Errorf("the readers never saw a leader move (no failed fetch): the test moved nothing")
	}
	if resets != 0 {
		t.Errorf("a leader move was taken %d times for a topic created again", resets)
	}
}

// Idempotence is asked for where the protocol version has it (0.11 on),
// unless turned off; it always comes with the one request in flight per
// connection that sarama requires of it (kfake speaks no version before
// 0.11's record batches, so the old version is checked here only).
func TestProducerConfig(t *testing.T) {
	for _, tc := range []struct {
		version    string
		off        bool
		idempotent bool
	}{
		{"2.8.0", false, true},
		{"0.11.0.0", false, true},
		{"0.10.2.0", false, false},
		{"2.8.0", true, false},
	} {
		cfg := config.Backend{KafkaVersion: tc.version, KafkaNoIdempotence: tc.off}
		sc, err := SaramaConfig(cfg, "t")
		if err != nil {
			t.Fatal(err)
		}
		producerConfig(sc, cfg)
		if sc.Producer.Idempotent != tc.idempotent || sc.Producer.RequiredAcks != sarama.WaitForAll {
			t.Errorf("%s off=%v: idempotent=%v acks=%d, want %v and all", tc.version, tc.off, sc.Producer.Idempotent, sc.Producer.RequiredAcks, tc.idempotent)
		}
		if err := sc.Validate(); err != nil {
			t.Errorf("%s off=%v: sarama refuses the configuration: %v", tc.version, tc.off, err)
		}
	}
}

// A topic deleted and created again while the idempotent producer had
// written to it: the new partition knows nothing of the producer's
// sequence and refuses the next record as out of order. Produce and
// ProduceMessages send it once more (sarama has started a new epoch by
// then), and it is written once.
func TestProduceToTopicCreatedAgain(t *testing.T) {
	b := testenv.Backend(t, testenv.EmbeddedRedis())
	c := connectTo(t, b, "again", config.Backend{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		topic   string
		produce func() error
	}{
		{"again-one", func() error { return c.Produce(ctx, "again-one", 0, []byte("x")) }},
		{"again-many", func() error {
			return c.ProduceMessages(ctx, &sarama.ProducerMessage{Topic: "again-many", Value: sarama.StringEncoder("x")},
				&sarama.ProducerMessage{Topic: "again-many", Value: sarama.StringEncoder("y")})
		}},
	} {
		if _, err := c.EnsureTopic(ctx, tc.topic, 1); err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := tc.produce(); err != nil {
				t.Fatalf("%s: %v", tc.topic, err)
			}
		}
		if err := c.DeleteTopics(tc.topic); err != nil {
			t.Fatal(err)
		}
		if _, err := c.EnsureTopic(ctx, tc.topic, 1); err != nil {
			t.Fatal(err)
		}
		if err := tc.produce(); err != nil {
			t.Errorf("%s: first produce to the topic created again: %v", tc.topic, err)
		}
		want := int64(1)
		if tc.topic == "again-many" {
			want = 2
		}
		if hw := b.KafkaCluster().PartitionInfo(tc.topic, 0).HighWatermark; hw != want {
			t.Errorf("%s: %d records in the new partition, want %d", tc.topic, hw, want)
		}
	}
}

// BenchmarkProduce is what the idempotent producer costs: one record at a
// time (the produce latency a sequential call pays twice, request and
// response) and 64 writers at once (the throughput a loaded sidecar
// needs), with and without idempotence (acks=all both).
//
//	go test -run - -bench Produce -count 6 ./adapter/kafka
func BenchmarkProduce(b *testing.B) {
	be := testenv.Backend(b, testenv.EmbeddedRedis())
	for _, idem := range []bool{true, false} {
		for _, writers := range []int{1, 64} {
			name := fmt.Sprintf("idempotent=%v/writers=%d", idem, writers)
			b.Run(name, func(b *testing.B) {
				ctx := context.Background()
				cfg := config.Backend{KafkaBrokers: strings.Split(be.KafkaBrokers(), ","), KafkaVersion: "2.8.0", KafkaNoIdempotence: !idem}
				c, err := Connect(ctx, cfg, "bench")
				if err != nil {
					b.Fatal(err)
				}
				defer c.Close()
				topic := strings.NewReplacer("=", "", "/", "-").Replace(name)
				if _, err := c.EnsureTopic(ctx, topic, 1); err != nil {
					b.Fatal(err)
				}
				value := make([]byte, 300) // about a mesh request's envelope
				b.SetParallelism(max(1, writers/runtime.GOMAXPROCS(0)))
				b.ResetTimer()
				if writers == 1 {
					for b.Loop() {
						if err := c.Produce(ctx, topic, 0, value); err != nil {
							b.Fatal(err)
						}
					}
					return
				}
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := c.Produce(ctx, topic, 0, value); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}

// What idempotence buys: a broker that appended a record but answers
// NOT_ENOUGH_REPLICAS_AFTER_APPEND (the in-sync replicas shrank below
// min.insync.replicas meanwhile) or REQUEST_TIMED_OUT (the replicas were
// slow) has the record, yet sarama sends it again, as it must. The
// idempotent producer's second copy carries the same sequence and the
// broker drops it; without idempotence the partition holds it twice.
func TestRetryAfterAppendWritesOnce(t *testing.T) {
	b := testenv.Backend(t, testenv.KafkaBrokers(3), testenv.EmbeddedRedis())
	k := b.KafkaCluster()
	for _, tc := range []struct {
		name    string
		cfg     config.Backend
		records int64
	}{
		{"idempotent", config.Backend{}, 1},
		{"-kafka_no_idempotence", config.Backend{KafkaNoIdempotence: true}, 2},
	} {
		for _, kerrName := range []string{"NOT_ENOUGH_REPLICAS_AFTER_APPEND", "REQUEST_TIMED_OUT"} {
			t.Run(tc.name+"/"+kerrName, func(t *testing.T) {
				c := connectTo(t, b, "retry", tc.cfg)
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				topic := strings.NewReplacer("-", "", "_", "").Replace(tc.name + kerrName)
				if _, err := c.EnsureTopic(ctx, topic, 1); err != nil {
					t.Fatal(err)
				}
				e := kerr.NotEnoughReplicasAfterAppend
				if kerrName == "REQUEST_TIMED_OUT" {
					e = kerr.RequestTimedOut
				}
				h := k.Fault(kfake.Fault{Keys: []kmsg.Key{kmsg.Produce}, Topic: topic, Err: e})
				defer h.Remove()
				if err := c.Produce(ctx, topic, 0, []byte("once")); err != nil {
					t.Fatal(err)
				}
				if h.Hits() != 1 {
					t.Fatalf("the fault answered %d produce requests, want 1", h.Hits())
				}
				if hw := k.PartitionInfo(topic, 0).HighWatermark; hw != tc.records {
					t.Errorf("%d copies of the record in the partition, want %d", hw, tc.records)
				}
			})
		}
	}
}

// A broker leaving the cluster (kfake's RemoveNode: its listener closes,
// its partitions get leaders among the others) in the middle of the
// writes, which have just made it partition 0's leader: writes and reads go on
// on the remaining brokers with nothing lost, and a topic created
// afterwards takes the replicas the cluster can now give.
func TestBrokerRemoved(t *testing.T) {
	const topic, parts = "survivor", 3
	k, c, ctx := onThreeBrokers(t, topic, parts)
	var mu sync.Mutex
	got := map[int32][]string{}
	for p := range int32(parts) {
		r := c.ReadPartition(topic, p, 0, func(_ int64, v []byte) {
			mu.Lock()
			got[p] = append(got[p], string(v))
			mu.Unlock()
		})
		defer r.Close()
	}
	var want [parts][]string
	produce := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			for p := range int32(parts) {
				v := fmt.Sprintf("%d-%d", p, i)
				if err := c.Produce(ctx, topic, p, []byte(v)); err != nil {
					t.Fatalf("produce %s: %v", v, err)
				}
				want[p] = append(want[p], v)
			}
		}
	}
	produce(0, 10)
	// Not the controller: kfake, unlike Kafka, elects no new one, and
	// topics could not be created any more. The broker removed leads
	// partition 0.
	ctrl, err := c.Controller()
	if err != nil {
		t.Fatal(err)
	}
	gone := (ctrl.ID() + 1) % 3
	if err := k.MoveTopicPartition(topic, 0, gone); err != nil {
		t.Fatal(err)
	}
	if err := k.RemoveNode(gone); err != nil {
		t.Fatal(err)
	}
	produce(10, 20)
	testenv.Eventually(t, 30*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		for p := range int32(parts) {
			if len(got[p]) < len(want[p]) {
				return false
			}
		}
		return true
	}, "every record read")
	mu.Lock()
	for p := range int32(parts) {
		if !slices.Equal(got[p], want[p]) {
			t.Errorf("partition %d read %v, want %v", p, got[p], want[p])
		}
		if l := k.LeaderFor(topic, p); l == gone {
			t.Errorf("partition %d still led by the removed broker %d", p, gone)
		}
	}
	mu.Unlock()
	if err := c.RefreshMetadata(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.EnsureTopic(ctx, "after", 1); err != nil {
		t.Fatal(err)
	}
	if n := k.TopicInfo("after").NumReplicas; n != 2 {
		t.Errorf("a topic created on the two brokers left has %d replicas, want 2", n)
	}
}

// onThreeBrokers serves a three-broker cluster, connects kar's client and
// creates topic with parts partitions; ctx ends with the test.
func onThreeBrokers(t *testing.T, topic string, parts int32) (*kfake.Cluster, *Client, context.Context) {
	t.Helper()
	b := testenv.Backend(t, testenv.KafkaBrokers(3), testenv.EmbeddedRedis())
	c := connectTo(t, b, topic, config.Backend{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	if _, err := c.EnsureTopic(ctx, topic, parts); err != nil {
		t.Fatal(err)
	}
	return b.KafkaCluster(), c, ctx
}
