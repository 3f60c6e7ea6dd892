package kafka

import (
	"fmt"

	"github.com/IBM/sarama"
)

// Offsets asks each partition's leader for the newest (sarama.OffsetNewest)
// or oldest (sarama.OffsetOldest) offset of the given partitions of topic,
// in one request per broker: sarama's GetOffset sends a request per
// partition, and a sidecar's periodic look at many partitions made that
// the largest part of an idle mesh's Kafka traffic.
func Offsets(kc sarama.Client, topic string, parts []int32, which int64) (map[int32]int64, error) {
	reqs := map[*sarama.Broker]*sarama.OffsetRequest{}
	for _, p := range parts {
		b, err := kc.Leader(topic, p)
		if err != nil {
			return nil, fmt.Errorf("kafka: leader of partition %d: %w", p, err)
		}
		if reqs[b] == nil {
			reqs[b] = &sarama.OffsetRequest{Version: 1}
		}
		reqs[b].AddBlock(topic, p, which, 1)
	}
	out := make(map[int32]int64, len(parts))
	for b, req := range reqs {
		resp, err := b.GetAvailableOffsets(req)
		if err != nil {
			return nil, fmt.Errorf("kafka: offsets: %w", err)
		}
		for _, p := range parts {
			if blk := resp.GetBlock(topic, p); blk != nil {
				if blk.Err != sarama.ErrNoError {
					return nil, fmt.Errorf("kafka: offsets of partition %d: %w", p, blk.Err)
				}
				out[p] = blk.Offset
			}
		}
	}
	return out, nil
}
