package kafka

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// The writer keeps one produce request in flight per broker: records
// produced while one is out wait and go together in the next request,
// written by the goroutine that reads the answer, in the order produced.
func TestWriterBatchesWhileARequestIsOut(t *testing.T) {
	const topic, waiting = "batched", 20
	k, c, ctx := onThreeBrokers(t, topic, 1)
	release := make(chan struct{})
	held := make(chan struct{})
	var mu sync.Mutex
	var batches []int32 // records in each produce request
	k.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		mu.Lock()
		for _, tp := range r.(*kmsg.ProduceRequest).Topics {
			for _, p := range tp.Partitions {
				var batch kmsg.RecordBatch
				if batch.ReadFrom(p.Records) == nil {
					batches = append(batches, batch.NumRecords)
				}
			}
		}
		n := len(batches)
		mu.Unlock()
		if n == 1 {
			// Hold the first request until the others wait.
			close(held)
			k.SleepControl(func() { <-release })
		}
		return nil, nil, false
	})
	first := make(chan error, 1)
	go func() { first <- c.Produce(ctx, topic, 0, []byte("first")) }()
	testenv.Eventually(t, 10*time.Second, func() bool {
		select {
		case <-held:
			return true
		default:
			return false
		}
	}, "the first request at the broker")
	var wg sync.WaitGroup
	var failed atomic.Int32
	// One producer after the other, each once the previous has queued its
	// record, so that the order they produced in is known.
	for i := range waiting {
		queued := make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			close(queued)
			if err := c.Produce(ctx, topic, 0, []byte(fmt.Sprint(i))); err != nil {
				failed.Add(1)
			}
		}()
		<-queued
		testenv.Eventually(t, 10*time.Second, func() bool { return c.w.queuedFor(topic, 0) == i+1 }, "record queued")
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d records failed", failed.Load())
	}
	mu.Lock()
	if !slices.Equal(batches, []int32{1, waiting}) {
		t.Errorf("the broker saw produce requests of %v records, want [1 %d]: the first, and one for all that waited", batches, waiting)
	}
	mu.Unlock()
	want := []string{"first"}
	for i := range waiting {
		want = append(want, fmt.Sprint(i))
	}
	if got := readAll(t, c, topic, 0, len(want)); !slices.Equal(got, want) {
		t.Errorf("the partition holds %v, want %v", got, want)
	}
}

// A connection cut with a produce request unanswered: the writer opens
// another and sends the batch again; the producer hears of nothing.
func TestWriterSurvivesACutConnection(t *testing.T) {
	const topic = "cut"
	k, c, ctx := onThreeBrokers(t, topic, 1)
	var cuts atomic.Int32
	k.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if cuts.Add(1) <= 2 {
			k.KeepControl()
			return nil, fmt.Errorf("cut"), true // closes the connection
		}
		return nil, nil, false
	})
	if err := c.Produce(ctx, topic, 0, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := c.Produce(ctx, topic, 0, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if n := cuts.Load(); n < 3 {
		t.Fatalf("the broker cut %d requests' connections, want 2 and then the request that passed", n)
	}
	if got := readAll(t, c, topic, 0, 2); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("the partition holds %v, want [a b]", got)
	}
	if hw := k.PartitionInfo(topic, 0).HighWatermark; hw != 2 {
		t.Errorf("%d records in the partition, want 2", hw)
	}
}

// readAll reads n records of topic/partition from the start.
func readAll(t *testing.T, c *Client, topic string, p int32, n int) []string {
	t.Helper()
	var mu sync.Mutex
	var got []string
	r := c.ReadPartition(topic, p, 0, func(_ int64, v []byte) {
		mu.Lock()
		got = append(got, string(v))
		mu.Unlock()
	})
	defer r.Close()
	testenv.Eventually(t, 20*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= n
	}, "the records read back")
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(got)
}

// queuedFor is how many records of topic/partition wait for a request.
func (w *writer) queuedFor(topic string, p int32) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if wp := w.parts[topicPartition{topic, p}]; wp != nil {
		return len(wp.pending)
	}
	return 0
}

// A partition that had nothing to send when its connection failed, and
// whose leader moved meanwhile to a broker nobody writes to yet: its next
// record finds the new leader. It waited for ever on the failed
// connection, which nothing opened again once the other partitions had
// moved away from it.
func TestWriterIdlePartitionFollowsItsLeaderAfterAFailedConnection(t *testing.T) {
	const topic = "idlemove"
	k, c, ctx := onThreeBrokers(t, topic, 2)
	for p := range int32(2) {
		if err := k.MoveTopicPartition(topic, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.RefreshMetadata(topic); err != nil {
		t.Fatal(err)
	}
	for p := range int32(2) {
		if err := c.Produce(ctx, topic, p, []byte("before")); err != nil {
			t.Fatal(err)
		}
	}
	// Both partitions move to broker 1; the next request on the
	// connection to broker 0 (partition 0's) has that connection cut.
	for p := range int32(2) {
		if err := k.MoveTopicPartition(topic, p, 1); err != nil {
			t.Fatal(err)
		}
	}
	var cut atomic.Bool
	k.ControlKey(int16(kmsg.Produce), func(kmsg.Request) (kmsg.Response, error, bool) {
		if cut.CompareAndSwap(false, true) {
			return nil, fmt.Errorf("cut"), true
		}
		k.KeepControl()
		return nil, nil, false
	})
	if err := c.Produce(ctx, topic, 0, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if !cut.Load() {
		t.Fatal("no connection was cut")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := c.Produce(pctx, topic, 1, []byte("after")); err != nil {
		t.Fatalf("partition 1, idle when its connection failed: %v", err)
	}
	if got := readAll(t, c, topic, 1, 2); !slices.Equal(got, []string{"before", "after"}) {
		t.Errorf("partition 1 holds %v, want [before after]", got)
	}
}

// Warm opens the writer's connections to every leader of the topic's
// partitions: the first record produced to each opens none.
func TestWarmOpensTheWritersConnections(t *testing.T) {
	const topic = "warm"
	k, c, ctx := onThreeBrokers(t, topic, 6)
	var dials atomic.Int32 // every connection sarama opens starts with ApiVersions
	k.ControlKey(int16(kmsg.ApiVersions), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		dials.Add(1)
		return nil, nil, false
	})
	leaders := map[int32]bool{}
	for p := range int32(6) {
		b, err := c.Client.Leader(topic, p)
		if err != nil {
			t.Fatal(err)
		}
		leaders[b.ID()] = true
	}
	c.Warm(topic)
	warmed := dials.Load()
	if int(warmed) < len(leaders) {
		t.Fatalf("Warm opened %d connections, want one to each of the %d leaders", warmed, len(leaders))
	}
	for p := range int32(6) {
		if err := c.Produce(ctx, topic, p, []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if n := dials.Load(); n != warmed {
		t.Errorf("the first records opened %d more connections after Warm", n-warmed)
	}
}

// A client takes one producer id, its writer's: sarama's producer, which
// took one of its own at every start and never produced, is made only for
// a cluster older than Kafka 0.11.
func TestConnectTakesOneProducerID(t *testing.T) {
	b := testenv.Backend(t, testenv.EmbeddedRedis())
	k := b.KafkaCluster()
	var ids atomic.Int32
	k.ControlKey(int16(kmsg.InitProducerID), func(kmsg.Request) (kmsg.Response, error, bool) {
		k.KeepControl()
		ids.Add(1)
		return nil, nil, false
	})
	c := connectTo(t, b, "ids", config.Backend{})
	if n := ids.Load(); n != 1 {
		t.Errorf("Connect took %d producer ids, want 1", n)
	}
	// The writer's id serves: a record is produced and acknowledged.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.EnsureTopic(ctx, "ids", 1); err != nil {
		t.Fatal(err)
	}
	if err := c.Produce(ctx, "ids", 0, []byte("x")); err != nil {
		t.Fatal(err)
	}
}
