package events

import (
	"context"

	"strconv"

	"github.com/IBM/sarama"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/wait"
)

// The headers a dead-lettered record carries besides the original's: where
// it came from, who could not take it and why.
const (
	HeaderDeadSubscription = "kar_dead_subscription" // the subscription id
	HeaderDeadActorType    = "kar_dead_actor_type"
	HeaderDeadActorID      = "kar_dead_actor_id"
	HeaderDeadPath         = "kar_dead_path" // the actor method
	HeaderDeadTopic        = "kar_dead_topic"
	HeaderDeadPartition    = "kar_dead_partition"
	HeaderDeadOffset       = "kar_dead_offset"
	HeaderDeadAttempts     = "kar_dead_attempts"
	HeaderDeadError        = "kar_dead_error" // the last attempt's error, at most 1 KiB
	HeaderDeadSink         = "kar_dead_sink"  // a sink subscription's sink URL
)

// deadLetter writes m (its key, value and headers, plus the kar_dead_*
// headers) to the application's dead-letter topic and logs the failure at
// warn; then the subscription may go on. It retries while Kafka is
// unavailable: the event is given up only once the dead-letter topic holds it.
func (w *worker) deadLetter(ctx context.Context, m *sarama.ConsumerMessage, to member, attempts int, cause error) error {
	s := w.r.s
	reason := oneLine(cause.Error())
	if len(reason) > 1024 {
		reason = reason[:1024]
	}
	hs := make([]sarama.RecordHeader, 0, len(m.Headers)+10)
	for _, h := range m.Headers {
		if h != nil {
			hs = append(hs, *h)
		}
	}
	for _, kv := range [][2]string{
		{HeaderDeadSubscription, to.sub.ID}, {HeaderDeadActorType, to.sub.Actor.Type}, {HeaderDeadActorID, to.sub.Actor.ID},
		{HeaderDeadPath, to.sub.Path}, {HeaderDeadTopic, to.sub.Topic}, {HeaderDeadPartition, strconv.Itoa(int(m.Partition))},
		{HeaderDeadOffset, strconv.FormatInt(m.Offset, 10)}, {HeaderDeadAttempts, strconv.Itoa(attempts)}, {HeaderDeadError, reason},
	} {
		hs = append(hs, sarama.RecordHeader{Key: []byte(kv[0]), Value: []byte(kv[1])})
	}
	if to.sub.Sink != "" {
		hs = append(hs, sarama.RecordHeader{Key: []byte(HeaderDeadSink), Value: []byte(to.sub.Sink)})
	}
	topic := kafka.DeadLetterTopic(s.opts.App)
	msg := &sarama.ProducerMessage{Topic: topic, Partition: 0, Headers: hs, Value: sarama.ByteEncoder(m.Value)}
	if m.Key != nil {
		msg.Key = sarama.ByteEncoder(m.Key)
	}
	backoff := s.opts.RetryMin
	for {
		_, err := s.kc.EnsureTopic(ctx, topic, 1)
		if err == nil {
			err = s.kc.ProduceMessages(ctx, msg)
		}
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		s.log.Warn("events: cannot write an undeliverable event to the dead-letter topic; retrying", "subscription", to.field,
			"dead_letter_topic", topic, "err", err, "retry_in", backoff)
		if !wait.Sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, s.opts.RetryMax)
	}
	if s.opts.DeadLettered != nil {
		s.opts.DeadLettered()
	}
	s.log.Warn("events: event not delivered; sent it to the dead-letter topic and went on with the next",
		"subscription", to.field, "actor", to.sub.Actor.Type+"/"+to.sub.Actor.ID, "path", to.sub.Path,
		"topic", to.sub.Topic, "partition", m.Partition, "offset", m.Offset, "attempts", attempts,
		"dead_letter_topic", topic, "err", reason)
	return nil
}
