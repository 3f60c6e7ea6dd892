package main

// The wire client: Kafka's produce and fetch requests written with
// sarama's protocol types on connections of their own, one for each
// direction, and nothing between them and the caller. It is the quickest
// way to the broker the libraries allow, and the way kar's sidecars go
// (adapter/kafka's writer and PartitionReader), so a floor timed with the
// two libraries' own producers and consumers only (their goroutines,
// channels and batching on the way) would be slower than kar's parts can
// go, and would flatter kar. The floor and the chain floor time it beside
// sarama's and kgo's clients, and the quickest counts.
//
// What it leaves out is what kar's sidecars must do and a floor need not:
// the idempotent producer, retries, leader moves, more than one record in
// flight per connection.

import (
	"fmt"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// wireFetchWait is how long a fetch parks at the broker, as kar's readers'.
const wireFetchWait = 500 * time.Millisecond

// newWireKafka opens the wire client's two connections to the leaders of
// partition produceTo and of partition consume of topic.
func newWireKafka(brokers, topic string, produceTo, consume int32) (*chainKafka, error) {
	cfg := floorConfig()
	c, err := sarama.NewClient([]string{brokers}, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	open := func(p int32) (*sarama.Broker, error) {
		leader, err := c.Leader(topic, p)
		if err != nil {
			return nil, err
		}
		b := sarama.NewBroker(leader.Addr())
		if err := b.Open(cfg); err != nil {
			return nil, err
		}
		if ok, err := b.Connected(); !ok {
			return nil, fmt.Errorf("connecting to %s: %v", leader.Addr(), err)
		}
		return b, nil
	}
	prod, err := open(produceTo)
	if err != nil {
		return nil, err
	}
	fetch, err := open(consume)
	if err != nil {
		return nil, err
	}
	// One produce at a time on the connection: a floor's sequential
	// calls have one in flight anyway.
	var mu sync.Mutex
	return &chainKafka{
		produce: func(key, value []byte) error {
			now := time.Now().Truncate(time.Millisecond)
			req := &sarama.ProduceRequest{Version: 7, RequiredAcks: sarama.WaitForAll, Timeout: 10000}
			req.AddBatch(topic, produceTo, &sarama.RecordBatch{
				Version: 2, FirstTimestamp: now, MaxTimestamp: now,
				ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1,
				Records: []*sarama.Record{{Key: key, Value: value}},
			})
			mu.Lock()
			resp, err := prod.Produce(req)
			mu.Unlock()
			if err != nil {
				return err
			}
			if block := resp.GetBlock(topic, produceTo); block == nil {
				return fmt.Errorf("produce: no answer for partition %d", produceTo)
			} else if block.Err != sarama.ErrNoError {
				return fmt.Errorf("produce: %w", block.Err)
			}
			return nil
		},
		each: func(fn func(key, value []byte)) {
			// Each floor run has a fresh topic: reading it from the start
			// misses nothing produced before the first fetch.
			var next int64
			for {
				req := &sarama.FetchRequest{Version: 4, MaxWaitTime: int32(wireFetchWait / time.Millisecond), MinBytes: 1, MaxBytes: 1 << 20, Isolation: sarama.ReadUncommitted}
				req.AddBlock(topic, consume, next, 1<<20, -1)
				resp, err := fetch.Fetch(req)
				if err != nil {
					fmt.Println("error fetch:", err)
					return
				}
				block := resp.GetBlock(topic, consume)
				if block == nil {
					continue
				}
				if block.Err != sarama.ErrNoError {
					fmt.Println("error fetch:", block.Err)
					return
				}
				for _, set := range block.RecordsSet {
					batch := set.RecordBatch
					if batch == nil {
						continue
					}
					for _, rec := range batch.Records {
						if off := batch.FirstOffset + rec.OffsetDelta; off >= next {
							fn(rec.Key, rec.Value)
							next = off + 1
						}
					}
				}
			}
		},
	}, nil
}
