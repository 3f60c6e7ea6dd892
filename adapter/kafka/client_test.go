package kafka

import (
	"context"
	"testing"
	"time"

	"github.com/IBM/sarama"

	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// -kafka_topic_config (KAR's flag) sets the mesh topic's configuration
// when kar creates it; other topics keep the broker's defaults.
func TestMeshTopicConfig(t *testing.T) {
	b := testenv.Backend(t)
	cfg := config.Backend{KafkaBrokers: []string{b.KafkaBrokers()}, KafkaVersion: "2.8.0", KafkaTopicConfig: "retention.ms=123456, segment.ms=300000"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := Connect(ctx, cfg, "cfgapp")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, topic := range []string{Topic("cfgapp"), "orders"} {
		if _, err := c.EnsureTopic(ctx, topic, 1); err != nil {
			t.Fatal(err)
		}
	}
	admin, err := sarama.NewClusterAdminFromClient(c.Client)
	if err != nil {
		t.Fatal(err)
	}
	retention := func(topic string) string {
		entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: []string{"retention.ms"}})
		if err != nil {
			t.Fatalf("describe %s: %v", topic, err)
		}
		for _, e := range entries {
			if e.Name == "retention.ms" && !e.Default {
				return e.Value
			}
		}
		return ""
	}
	if got := retention(Topic("cfgapp")); got != "123456" {
		t.Errorf("mesh topic retention.ms = %q, want 123456", got)
	}
	if got := retention("orders"); got == "123456" {
		t.Errorf("an event topic got the mesh topic's configuration")
	}
}
