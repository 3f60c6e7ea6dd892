package kafka

import (
	"context"
	"errors"

	"github.com/IBM/sarama"
)

// Helpers of the event topics (sidecar/events): records with headers
// (CloudEvents binary mode puts the attributes in ce_* headers), topics
// created with the user's options, and a fetch connection of their own.

// ProduceMessages writes msgs (their Topic, Partition, Key, Value and
// Headers set by the caller), handing them to the producer in order, and
// returns once the broker acknowledged all (acks=all); the error is the
// first failure. It replaces each msg.Metadata. Records refused only for
// the idempotent producer's sequence (producerReset) are sent once more.
func (c *Client) ProduceMessages(ctx context.Context, msgs ...*sarama.ProducerMessage) error {
	failed, err := c.produceAll(ctx, msgs)
	if len(failed) > 0 && producerReset(err) {
		_, err = c.produceAll(ctx, failed)
	}
	return err
}

// produceAll writes msgs and returns those refused for producerReset and
// the first failure.
func (c *Client) produceAll(ctx context.Context, msgs []*sarama.ProducerMessage) (resend []*sarama.ProducerMessage, err error) {
	in, err := c.input()
	if err != nil {
		return nil, err
	}
	done := make(chan *sarama.ProducerError, len(msgs))
	sent := 0
enqueue:
	for _, m := range msgs {
		m.Metadata = done
		select {
		case in <- m:
			sent++
		case <-ctx.Done():
			err = ctx.Err()
			break enqueue
		case <-c.done:
			err = errors.New("kafka client closed")
			break enqueue
		}
	}
	for range sent {
		select {
		case e := <-done:
			if e.Err == nil {
				continue
			}
			if err == nil {
				err = e.Err
			}
			if producerReset(e.Err) {
				resend = append(resend, e.Msg)
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !producerReset(err) {
		resend = nil // another failure: the caller hears of it
	}
	return resend, err
}

// TopicOptions are the settings of a new topic (the API's topicCreateOptions).
type TopicOptions struct {
	NumPartitions     int32
	ReplicationFactor int16 // 0: -kafka_replication_factor, or min(3, brokers)
	ConfigEntries     map[string]*string
}

// CreateTopic creates topic and reports whether it did (false: it existed).
func (c *Client) CreateTopic(ctx context.Context, topic string, o TopicOptions) (created bool, err error) {
	if o.NumPartitions <= 0 {
		o.NumPartitions = 1
	}
	err = c.createTopic(topic, &sarama.TopicDetail{
		NumPartitions: o.NumPartitions, ReplicationFactor: o.ReplicationFactor, ConfigEntries: o.ConfigEntries,
	})
	if isTopicExists(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	// Wait for the metadata to show it, so that a publish right after the
	// creation finds its partitions.
	if _, err := c.EnsureTopic(ctx, topic, o.NumPartitions); err != nil {
		return true, err
	}
	return true, nil
}
