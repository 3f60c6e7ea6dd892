// Package kafka is kar's Kafka adapter: every sarama client of the project
// is set up here, from config.Backend.
package kafka

// Topic is the application's request/response topic: one partition per live
// sidecar (claimed through a lease in Redis) plus spares.
func Topic(app string) string { return "kar_" + app }

// EventTopic is the Kafka topic behind the application's event topic name.
func EventTopic(app, topic string) string { return "kar_" + app + "_event_" + topic }
