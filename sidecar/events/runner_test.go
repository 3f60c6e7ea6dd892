package events

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/testenv"
)

// readerGoroutines counts the goroutines reading Kafka partitions: our
// partition readers' and sarama consumers' (the test's own client only
// produces and asks for metadata).
func readerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			st := string(buf[:n])
			return strings.Count(st, "kafka.(*PartitionReader).run(") +
				strings.Count(st, "sarama.(*partitionConsumer).") + strings.Count(st, "sarama.(*brokerConsumer).")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// TestStopWithReadersBlocked: under a slow subscriber the reader of every
// partition waits to hand its next record over. A hand-off and a stop must
// still end the sessions (a reader's Close waits for a record being handed
// over, so a handler that waited for ever would hang Run), nothing is
// delivered after Run returned, and no reader is left behind.
func TestStopWithReadersBlocked(t *testing.T) {
	w := newWorld(t)
	const subs, n = 2, 150
	var stopped atomic.Bool
	var late atomic.Int64
	recs := make([]*recorder, subs)
	for i := range recs {
		recs[i] = &recorder{delay: func() time.Duration { return 10 * time.Millisecond }}
	}
	route := func(by string) DeliverFunc {
		return func(ctx context.Context, typ, id, path, ct string, body []byte) error {
			if stopped.Load() {
				late.Add(1)
			}
			var i int
			fmt.Sscanf(id, "a%d", &i)
			return recs[i].deliverAs(by)(ctx, typ, id, path, ct, body)
		}
	}
	a, _ := w.service(t, "A", route("A"))
	base := serve(t, a).URL
	expect(t, "PUT", base+"/kar/v1/event/busy", "application/json", `{"numPartitions":3}`, 201, "")
	publishN(t, base, "busy", 0, n) // round robin over the partitions
	for i := range subs {
		subscribe(t, base, fmt.Sprintf("a%d", i), fmt.Sprintf("s%d", i), `{"path":"/m","topic":"busy","contentType":"application/json","oldestOffset":true}`)
	}
	stopA := run(t, a)
	testenv.Eventually(t, 20*time.Second, func() bool { return recs[0].count() > 3 && recs[1].count() > 3 }, "A delivers both")

	// B joins: A hands one subscription over with its readers blocked.
	b, _ := w.service(t, "B", route("B"))
	stopB := run(t, b)
	ctx := context.Background()
	testenv.Eventually(t, 20*time.Second, func() bool {
		held := map[string]int{}
		for i := range subs {
			held[w.rdb.Get(ctx, groupLeaseKey(a.keys, unitOf("busy", fmt.Sprintf("s%d", i)))).Val()]++
		}
		return held["A"] == 1 && held["B"] == 1
	}, "A hands a subscription over to B")
	testenv.Eventually(t, 20*time.Second, func() bool { return recs[0].count() > n/2 && recs[1].count() > n/2 }, "both deliver on")

	// Stop mid-stream (on a fast machine perhaps after the end: the
	// checks hold either way).
	stopA()
	stopB()
	stopped.Store(true)
	if g := readerGoroutines(); g != 0 {
		t.Errorf("%d goroutines still reading Kafka after Run returned", g)
	}
	if l := late.Load(); l != 0 {
		t.Errorf("%d deliveries after Run returned", l)
	}
	for i, r := range recs {
		if r.overlaps != 0 {
			t.Errorf("subscription %d: %d overlapping deliveries", i, r.overlaps)
		}
		seen := map[int]bool{}
		for _, v := range numbers(t, r.snapshot()) {
			seen[v] = true
		}
		t.Logf("subscription %d: %d deliveries of %d distinct events before the stop", i, r.count(), len(seen))
	}
}

// TestForeignRecordDelivered: a record a plain Kafka client wrote (key, no
// ce_ headers, its own timestamp) is delivered as an event named after its
// topic, partition and offset, at the record's time: the reader hands
// over whole records, not only their values.
func TestForeignRecordDelivered(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	expect(t, "PUT", base+"/kar/v1/event/foreign", "application/json", `{"numPartitions":1}`, 201, "")
	subscribe(t, base, "a1", "s1", fmt.Sprintf(`{"path":"/m","topic":"foreign","contentType":%q,"oldestOffset":true}`, ContentTypeCloudEvents))
	run(t, s)
	kt := kafka.EventTopic("foreign")
	at := time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)
	for i := range 2 {
		m := &sarama.ProducerMessage{Topic: kt, Partition: 0, Key: sarama.StringEncoder("k"), Value: sarama.StringEncoder(fmt.Sprintf(`{"raw":%d}`, i)), Timestamp: at}
		if err := w.kc.ProduceMessages(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 2 }, "2 deliveries")
	for i, d := range rec.snapshot() {
		var args []map[string]any
		if err := json.Unmarshal([]byte(d.body), &args); err != nil || len(args) != 1 {
			t.Fatalf("%q is not [cloudevent]: %v", d.body, err)
		}
		e := args[0]
		if e["id"] != fmt.Sprintf("%s-0-%d", kt, i) || e["time"] != at.Format(time.RFC3339) || fmt.Sprint(e["data"]) != fmt.Sprintf("map[raw:%d]", i) {
			t.Errorf("record %d delivered as %v", i, e)
		}
	}
}
