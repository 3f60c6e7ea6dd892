package kafka

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// A broker that comes back without the topic, which is then created again
// and written past the reader's old position before the reader reconnects:
// the reader starts over at the new log's beginning and says so, instead
// of resuming at its old offset and skipping the new log's first records.
func TestReaderNoticesTopicCreatedAgain(t *testing.T) {
	b := testenv.Backend(t) // no data directory: the broker restarts empty
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := Connect(ctx, config.Backend{KafkaBrokers: []string{b.KafkaBrokers()}, KafkaVersion: "2.8.0"}, "reader")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const topic = "incarnations"
	produce := func(from, n int) {
		t.Helper()
		for i := from; i < from+n; i++ {
			if err := c.Produce(ctx, topic, 0, []byte(strconv.Itoa(i))); err != nil {
				t.Fatalf("produce %d: %v", i, err)
			}
		}
	}
	if _, err := c.EnsureTopic(ctx, topic, 1); err != nil {
		t.Fatal(err)
	}
	produce(0, 5)
	var mu sync.Mutex
	var got []string
	errs, resets := 0, 0
	r := c.ReadPartitionWith(topic, 0, 0, ReadOptions{
		Handle: func(off int64, value []byte) {
			mu.Lock()
			got = append(got, string(value))
			mu.Unlock()
		},
		Error: func(error) {
			mu.Lock()
			errs++
			mu.Unlock()
		},
		OutOfRange: func(offset, oldest int64) {
			mu.Lock()
			resets++
			mu.Unlock()
		},
	})
	defer r.Close()
	count := func() (int, int, int) {
		mu.Lock()
		defer mu.Unlock()
		return len(got), errs, resets
	}
	testenv.Eventually(t, 10*time.Second, func() bool { n, _, _ := count(); return n == 5 }, "the first 5 records")

	b.StopKafka()
	// Let the reader fail a few times, so that its next try is a while off.
	testenv.Eventually(t, 20*time.Second, func() bool { _, e, _ := count(); return e >= 5 }, "the reader to fail 5 times")
	if err := b.StartKafka(); err != nil {
		t.Fatal(err)
	}
	if err := c.RefreshMetadata(); err != nil && err != sarama.ErrUnknownTopicOrPartition {
		t.Logf("refresh: %v", err)
	}
	if _, err := c.EnsureTopic(ctx, topic, 1); err != nil {
		t.Fatal(err)
	}
	if err := c.ResetProducer(); err != nil {
		t.Fatal(err)
	}
	produce(100, 10) // offsets 0-9 of the new log: past the old position 5
	testenv.Eventually(t, 20*time.Second, func() bool { n, _, _ := count(); return n >= 15 }, "the new log's 10 records")
	mu.Lock()
	defer mu.Unlock()
	if got[5] != "100" || len(got) != 15 || resets != 1 {
		t.Errorf("after the topic was created again: read %v with %d resets, want 0-4 then 100-109 and one reset", got, resets)
	}
}
