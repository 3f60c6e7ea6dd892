// Package kafka is kar's Kafka adapter: every sarama client of the project
// is set up here, from config.Backend.
package kafka

import (
	"fmt"
	"strings"
)

// The one name scheme of kar's Kafka topics. kar's own topics live under
// ReservedPrefix, which no user event topic may take (ValidEventTopic), and
// each kind of own topic has a fixed prefix of its own followed by the whole
// application name: so the map from (kind, application) to topic is
// injective, and no application name or user topic can produce another
// application's topic. User event topics are plain Kafka topics, shared on
// purpose (as in KAR) by whoever names them.
//
// A Kafka cluster refuses a topic whose name differs from an existing one
// only by '.' against '_' (their metric names would collide): two
// applications named so ("a.b" and "a_b") cannot share one Kafka. That is
// refused at topic creation, never a crossing of their messages.
const ReservedPrefix = "__kar"

// Topic is the application's request/response topic: one partition per live
// sidecar (claimed through a lease in Redis) plus spares.
func Topic(app string) string { return ReservedPrefix + "_mesh_" + app }

// DeadLetterTopic holds the application's events that could not be
// delivered within the retry bound, with the reason in record headers.
func DeadLetterTopic(app string) string { return ReservedPrefix + "_dead_" + app }

// EventTopic is the Kafka topic behind an event topic name: the same name,
// as in KAR, so other Kafka producers and consumers can share it.
func EventTopic(topic string) string { return topic }

// maxTopicLen is Kafka's limit on a topic name.
const maxTopicLen = 249

// ValidEventTopic checks a user's event topic name: a legal Kafka topic
// name outside kar's reserved name space.
func ValidEventTopic(topic string) error {
	switch {
	case topic == "":
		return fmt.Errorf("empty topic name")
	case topic == "." || topic == "..":
		return fmt.Errorf("topic name %q is not allowed by Kafka", topic)
	case len(topic) > maxTopicLen:
		return fmt.Errorf("topic name of %d characters: Kafka allows at most %d", len(topic), maxTopicLen)
	case strings.HasPrefix(topic, ReservedPrefix):
		return fmt.Errorf("topic name %q: names starting with %q are reserved for kar's own topics", topic, ReservedPrefix)
	}
	for _, r := range topic {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("topic name %q may hold only letters, digits, '.', '_' and '-' (Kafka's rule)", topic)
		}
	}
	return nil
}
