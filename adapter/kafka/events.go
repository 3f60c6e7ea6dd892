package kafka

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/IBM/sarama"
)

// Helpers of the event topics (sidecar/events): records with headers
// (CloudEvents binary mode puts the attributes in ce_* headers), topics
// created with the user's options, and a fetch connection of their own.

// ProduceMessages writes msgs (their Topic, Partition, Key, Value and
// Headers set by the caller), handing them to the producer in order, and
// returns once the broker acknowledged all (acks=all); the error is the
// first failure. It replaces each msg.Metadata.
func (c *Client) ProduceMessages(ctx context.Context, msgs ...*sarama.ProducerMessage) error {
	done := make(chan error, len(msgs))
	sent := 0
	var err error
enqueue:
	for _, m := range msgs {
		m.Metadata = done
		select {
		case c.input() <- m:
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
			if e != nil && err == nil {
				err = e
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return err
}

// TopicOptions are the settings of a new topic (the API's topicCreateOptions).
type TopicOptions struct {
	NumPartitions     int32
	ReplicationFactor int16 // 0: 3 on clusters of 3 brokers or more, else 1
	ConfigEntries     map[string]*string
}

// CreateTopic creates topic and reports whether it did (false: it existed).
func (c *Client) CreateTopic(ctx context.Context, topic string, o TopicOptions) (created bool, err error) {
	if o.NumPartitions <= 0 {
		o.NumPartitions = 1
	}
	if o.ReplicationFactor <= 0 {
		o.ReplicationFactor = c.replication()
	}
	// The admin shares the client; it is never closed, since closing it would close the client.
	admin, err := sarama.NewClusterAdminFromClient(c.Client)
	if err != nil {
		return false, fmt.Errorf("kafka admin: %w", err)
	}
	err = admin.CreateTopic(topic, &sarama.TopicDetail{
		NumPartitions: o.NumPartitions, ReplicationFactor: o.ReplicationFactor, ConfigEntries: o.ConfigEntries,
	}, false)
	if err != nil && (errors.Is(err, sarama.ErrTopicAlreadyExists) || strings.Contains(err.Error(), "already exists")) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("create topic %s: %w", topic, err)
	}
	// Wait for the metadata to show it, so that a publish right after the
	// creation finds its partitions.
	if _, err := c.EnsureTopic(ctx, topic, o.NumPartitions); err != nil {
		return true, err
	}
	return true, nil
}
