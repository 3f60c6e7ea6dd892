package devenv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// The mesh talks to the broker only through sarama, as to a real cluster:
// these tests pin down that kfake answers sarama the way the mesh needs.

func saramaConfig() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_8_0_0 // KAFKA_VERSION's default
	c.ClientID = "devenv-test"
	c.Producer.Return.Successes = true
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Partitioner = sarama.NewManualPartitioner
	c.Consumer.Return.Errors = true
	c.Metadata.Retry.Backoff = 50 * time.Millisecond
	c.Net.DialTimeout = 5 * time.Second
	return c
}

func newClient(t *testing.T, addr string, cfg *sarama.Config) sarama.Client {
	t.Helper()
	c, err := sarama.NewClient([]string{addr}, cfg)
	if err != nil {
		t.Fatalf("sarama.NewClient(%s): %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func produce(t *testing.T, p sarama.SyncProducer, topic string, partition int32, value string) int64 {
	t.Helper()
	part, off, err := p.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: partition, Value: sarama.StringEncoder(value)})
	if err != nil {
		t.Fatalf("produce %q to %s/%d: %v", value, topic, partition, err)
	}
	if part != partition {
		t.Fatalf("produced to partition %d, want %d", part, partition)
	}
	return off
}

func consumeOne(t *testing.T, pc sarama.PartitionConsumer, timeout time.Duration) *sarama.ConsumerMessage {
	t.Helper()
	select {
	case m := <-pc.Messages():
		return m
	case err := <-pc.Errors():
		t.Fatalf("partition consumer: %v", err)
	case <-time.After(timeout):
		t.Fatalf("no message within %s", timeout)
	}
	return nil
}

func TestSaramaTopicsPartitionsAndDirectConsumers(t *testing.T) {
	b := startBackend(t, Options{Redis: RedisEmbedded})
	cfg := saramaConfig()
	// Metadata and offset look-ups share the connection with the parked
	// fetch, so each new partition consumer waits up to MaxWaitTime.
	cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
	client := newClient(t, b.KafkaBrokers(), cfg)
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	const topic, parts = "kar-test-app", 8
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("CreateTopic: %v", err)
	}
	// A one-broker cluster refuses more replicas than brokers, as Kafka does.
	err = admin.CreateTopic("kar-test-rf3", &sarama.TopicDetail{NumPartitions: 1, ReplicationFactor: 3}, false)
	if !errors.Is(err, sarama.ErrInvalidReplicationFactor) {
		t.Errorf("CreateTopic with replication factor 3 on one broker: %v; want ErrInvalidReplicationFactor", err)
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: 1}, false); !errors.Is(err, sarama.ErrTopicAlreadyExists) {
		t.Errorf("CreateTopic of an existing topic: %v; want ErrTopicAlreadyExists", err)
	}

	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()

	for p := int32(0); p < parts; p++ {
		produce(t, producer, topic, p, fmt.Sprintf("m%d", p))
	}
	pcs := make([]sarama.PartitionConsumer, parts)
	for p := range pcs {
		if pcs[p], err = consumer.ConsumePartition(topic, int32(p), sarama.OffsetOldest); err != nil {
			t.Fatalf("ConsumePartition(%d): %v", p, err)
		}
		defer pcs[p].AsyncClose()
	}
	for p, pc := range pcs {
		m := consumeOne(t, pc, 10*time.Second)
		if string(m.Value) != fmt.Sprintf("m%d", p) || m.Partition != int32(p) || m.Offset != 0 {
			t.Errorf("partition %d: got %q at %d/%d", p, m.Value, m.Partition, m.Offset)
		}
	}

	// Later, the mesh grows the topic; old and new partitions serve alike.
	if err := admin.CreatePartitions(topic, parts+4, nil, false); err != nil {
		t.Fatalf("CreatePartitions: %v", err)
	}
	if err := client.RefreshMetadata(topic); err != nil {
		t.Fatal(err)
	}
	ps, err := client.Partitions(topic)
	if err != nil || len(ps) != parts+4 {
		t.Fatalf("Partitions after growing = %v, %v; want %d", ps, err, parts+4)
	}
	newest := int32(parts + 3)
	produce(t, producer, topic, newest, "late")
	pc, err := consumer.ConsumePartition(topic, newest, sarama.OffsetOldest)
	if err != nil {
		t.Fatalf("ConsumePartition(new partition): %v", err)
	}
	defer pc.AsyncClose()
	if m := consumeOne(t, pc, 10*time.Second); string(m.Value) != "late" {
		t.Errorf("new partition: got %q", m.Value)
	}

	// kar purge deletes an application's topics; a later run creates them anew, empty.
	if err := admin.DeleteTopic("kar-test-other"); !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		t.Errorf("DeleteTopic of a missing topic: %v; want ErrUnknownTopicOrPartition", err)
	}
	if err := admin.CreateTopic("kar-test-purged", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	produce(t, producer, "kar-test-purged", 0, "old")
	if err := admin.DeleteTopic("kar-test-purged"); err != nil {
		t.Fatalf("DeleteTopic: %v", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := admin.CreateTopic("kar-test-purged", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CreateTopic after DeleteTopic: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := client.RefreshMetadata("kar-test-purged"); err != nil {
		t.Fatal(err)
	}
	if off, err := client.GetOffset("kar-test-purged", 0, sarama.OffsetNewest); err != nil || off != 0 {
		t.Errorf("newest offset of the re-created topic = %d, %v; want 0", off, err)
	}
}

// A consumer parked in a long poll (Fetch MaxWait) gets a record produced
// meanwhile at once, not at the end of the wait: request latency rides on it.
func TestSaramaFetchLongPollWakesOnProduce(t *testing.T) {
	b := startBackend(t, Options{Redis: RedisEmbedded})
	cfg := saramaConfig()
	cfg.Consumer.MaxWaitTime = 5 * time.Second
	client := newClient(t, b.KafkaBrokers(), cfg)
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("longpoll", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := consumer.ConsumePartition("longpoll", 1, sarama.OffsetNewest)
	if err != nil {
		t.Fatal(err)
	}
	// Close would wait out the parked fetch (MaxWaitTime); the client's
	// Close in t.Cleanup ends it.
	defer pc.AsyncClose()

	// A second client produces, as another sidecar would. It must be a
	// separate connection: the broker answers one request per connection
	// at a time (as Kafka does), so a produce sent on the consumer's
	// client would queue behind the parked fetch for up to MaxWaitTime.
	producer, err := sarama.NewSyncProducer([]string{b.KafkaBrokers()}, saramaConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	// Let the consumer reach its long poll: one empty fetch round trip.
	time.Sleep(200 * time.Millisecond)
	var slowest time.Duration
	for i := 0; i < 20; i++ {
		start := time.Now()
		produce(t, producer, "longpoll", 1, fmt.Sprintf("r%d", i))
		m := consumeOne(t, pc, 10*time.Second)
		slowest = max(slowest, time.Since(start))
		if string(m.Value) != fmt.Sprintf("r%d", i) {
			t.Errorf("got %q, want r%d", m.Value, i)
		}
	}
	t.Logf("slowest produce-to-consume of 20: %s", slowest)
	if slowest > 2*time.Second {
		t.Errorf("a record took %s from produce to consume with MaxWaitTime 5s; the long poll did not wake", slowest)
	}
}

func TestSaramaAutoTopicCreation(t *testing.T) {
	b := startBackend(t, Options{Redis: RedisEmbedded})
	cfg := saramaConfig()
	cfg.Producer.Partitioner = sarama.NewHashPartitioner
	client := newClient(t, b.KafkaBrokers(), cfg)
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	if _, _, err := producer.SendMessage(&sarama.ProducerMessage{Topic: "auto-created", Value: sarama.StringEncoder("x")}); err != nil {
		t.Fatalf("produce to a new topic: %v", err)
	}
	ps, err := client.Partitions("auto-created")
	if err != nil || len(ps) != 1 {
		t.Fatalf("auto-created topic partitions = %v, %v; want 1 (num.partitions=1)", ps, err)
	}
}

// The managed-service setup: SASL_SSL with the user "token".
func TestSaramaSASLSSL(t *testing.T) {
	certs, err := NewCerts(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	const password = "kafka-secret"
	b := startBackend(t, Options{Redis: RedisEmbedded, KafkaTLS: certs, KafkaPassword: password})
	env := envMap(b.Env())
	if env["KAFKA_ENABLE_TLS"] != "true" || env["KAFKA_USERNAME"] != "token" || env["KAFKA_PASSWORD"] != password || env["KAFKA_CA"] != certs.CABase64() {
		t.Errorf("Env() lacks the SASL_SSL variables: %v", b.Env())
	}

	withAuth := func(user, pass string, tc *tls.Config) *sarama.Config {
		c := saramaConfig()
		c.Net.TLS.Enable = tc != nil
		c.Net.TLS.Config = tc
		if user != "" {
			c.Net.SASL.Enable = true
			c.Net.SASL.Mechanism = sarama.SASLTypePlaintext
			c.Net.SASL.User = user
			c.Net.SASL.Password = pass
		}
		c.Metadata.Retry.Max = 0
		c.Net.DialTimeout = 2 * time.Second
		c.Net.ReadTimeout = 2 * time.Second
		return c
	}
	client := newClient(t, b.KafkaBrokers(), withAuth("token", password, certs.ClientConfig()))
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("secure", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatalf("CreateTopic over SASL_SSL: %v", err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce(t, producer, "secure", 1, "hi")

	for _, tc := range []struct {
		name string
		cfg  *sarama.Config
	}{
		{"wrong password", withAuth("token", "wrong", certs.ClientConfig())},
		{"no SASL", withAuth("", "", certs.ClientConfig())},
		{"no TLS", withAuth("token", password, nil)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := sarama.NewClient([]string{b.KafkaBrokers()}, tc.cfg)
			if err == nil {
				defer c.Close()
				if _, err = c.Partitions("secure"); err == nil {
					t.Fatal("the broker served a client that should be refused")
				}
			}
		})
	}
}

// StopKafka/StartKafka with DataDir: the broker comes back on its port
// with its records, and a sarama client reconnects by itself.
func TestKafkaRestartKeepsRecords(t *testing.T) {
	b := startBackend(t, Options{Redis: RedisEmbedded, DataDir: t.TempDir()})
	cfg := saramaConfig()
	cfg.Metadata.Retry.Max = 50
	cfg.Producer.Retry.Max = 50
	cfg.Producer.Retry.Backoff = 50 * time.Millisecond
	client := newClient(t, b.KafkaBrokers(), cfg)
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("durable", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce(t, producer, "durable", 2, "before")

	addr := b.KafkaAddr()
	b.StopKafka()
	if err := b.StartKafka(); err != nil {
		t.Fatalf("StartKafka: %v", err)
	}
	if b.KafkaAddr() != addr {
		t.Fatalf("restarted on %s, want %s", b.KafkaAddr(), addr)
	}
	if off := produce(t, producer, "durable", 2, "after"); off != 1 {
		t.Errorf("offset after restart = %d, want 1", off)
	}
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition("durable", 2, sarama.OffsetOldest)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	for _, want := range []string{"before", "after"} {
		if m := consumeOne(t, pc, 10*time.Second); string(m.Value) != want {
			t.Errorf("got %q, want %q", m.Value, want)
		}
	}
}

// kcat, a third-party client (librdkafka), reads what sarama wrote.
func TestKcatReadsTheBroker(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not installed (CI installs it)")
	}
	b := startBackend(t, Options{Redis: RedisEmbedded})
	client := newClient(t, b.KafkaBrokers(), saramaConfig())
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("crosscheck", &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil {
		t.Fatal(err)
	}
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	produce(t, producer, "crosscheck", 1, "from-sarama")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-b", b.KafkaBrokers(), "-C", "-t", "crosscheck", "-p", "1", "-o", "beginning", "-e", "-q").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "from-sarama" {
		t.Fatalf("kcat read %q, %v; want from-sarama", out, err)
	}
}

// TestRetentionDeletesOldRecords: with Retention set, records older than it
// are deleted, as a Kafka broker's log.retention.ms does; without it (the
// other tests) nothing is.
func TestRetentionDeletesOldRecords(t *testing.T) {
	b := startBackend(t, Options{Redis: RedisEmbedded, Retention: 300 * time.Millisecond})
	client := newClient(t, b.KafkaBrokers(), saramaConfig())
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	for i := range 3 {
		produce(t, producer, "retained", 0, fmt.Sprint("old ", i))
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		oldest, err := client.GetOffset("retained", 0, sarama.OffsetOldest)
		if err != nil {
			t.Fatal(err)
		}
		if oldest == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("oldest offset still %d after the retention passed; want 3", oldest)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// New records are kept until they too are older than the retention.
	if off := produce(t, producer, "retained", 0, "new"); off != 3 {
		t.Fatalf("new record at offset %d, want 3", off)
	}
	if newest, err := client.GetOffset("retained", 0, sarama.OffsetNewest); err != nil || newest != 4 {
		t.Fatalf("newest offset %d, %v; want 4", newest, err)
	}
}

// KafkaBrokers: 3 serves a three-broker cluster: Env lists every broker,
// metadata names three, a topic takes three replicas, and a restart comes
// back on the same three ports.
func TestThreeBrokers(t *testing.T) {
	b := startBackend(t, Options{Redis: RedisEmbedded, KafkaBrokers: 3})
	addrs := strings.Split(b.KafkaBrokers(), ",")
	if len(addrs) != 3 || addrs[0] != b.KafkaAddr() {
		t.Fatalf("KafkaBrokers() = %q; want three addresses, the first %s", b.KafkaBrokers(), b.KafkaAddr())
	}
	client := newClient(t, addrs[2], saramaConfig())
	if n := len(client.Brokers()); n != 3 {
		t.Errorf("metadata names %d brokers, want 3", n)
	}
	admin, err := sarama.NewClusterAdminFromClient(client)
	if err != nil {
		t.Fatal(err)
	}
	if err := admin.CreateTopic("rf3", &sarama.TopicDetail{NumPartitions: 3, ReplicationFactor: 3}, false); err != nil {
		t.Fatalf("CreateTopic with 3 replicas on 3 brokers: %v", err)
	}
	if got := b.KafkaCluster().TopicInfo("rf3").NumReplicas; got != 3 {
		t.Errorf("topic has %d replicas, want 3", got)
	}
	b.StopKafka()
	if b.KafkaCluster() != nil {
		t.Errorf("KafkaCluster() of a stopped broker is not nil")
	}
	if err := b.StartKafka(); err != nil {
		t.Fatalf("StartKafka: %v", err)
	}
	if got := b.KafkaBrokers(); got != strings.Join(addrs, ",") {
		t.Errorf("restarted on %s, want %s", got, strings.Join(addrs, ","))
	}
}
