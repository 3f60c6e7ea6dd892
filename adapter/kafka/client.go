package kafka

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/rcrowley/go-metrics"
)

// MaxMessageBytes is the largest record kar produces (Kafka's default
// message.max.bytes is about 1 MB).
const MaxMessageBytes = 1000000

// Client is kar's Kafka access: a sarama client for producing, metadata and
// admin requests. Records are read on connections of their own
// (ReadPartition): a broker answers the requests of one connection in
// order, so a produce sharing the connection of a parked long-poll fetch
// would wait out the fetch.
type Client struct {
	sarama.Client
	// producer is swapped by ResetProducer; Produce reads it under mu.
	mu       sync.RWMutex
	producer sarama.AsyncProducer
	done     chan struct{}
	wg       sync.WaitGroup
	// meshTopic gets meshConfig (-kafka_topic_config) when kar creates it.
	meshTopic  string
	meshConfig map[string]*string
}

// SaramaConfig turns the backend settings into a sarama configuration: TLS,
// SASL PLAIN (user `token` by default, as managed Event Streams wants) and
// the protocol version.
func SaramaConfig(cfg config.Backend, clientID string) (*sarama.Config, error) {
	sc := sarama.NewConfig()
	// sarama's metrics (go-metrics histograms updated on every request)
	// cost a tenth of a busy sidecar's CPU and nobody reads them.
	sc.MetricRegistry = metrics.NewRegistry()
	metrics.UseNilMetrics = true
	sc.ClientID = clientID
	v, err := sarama.ParseKafkaVersion(cfg.KafkaVersion)
	if err != nil {
		return nil, fmt.Errorf("KAFKA_VERSION %q is not a Kafka version such as 2.8.0", cfg.KafkaVersion)
	}
	sc.Version = v
	if cfg.KafkaEnableTLS {
		host, _, _ := net.SplitHostPort(cfg.KafkaBrokers[0])
		tc, err := store.TLSConfig(host, cfg.KafkaCA, cfg.KafkaTLSSkipVerify)
		if err != nil {
			return nil, fmt.Errorf("KAFKA_CA: %w", err)
		}
		sc.Net.TLS.Enable = true
		sc.Net.TLS.Config = tc
	}
	if cfg.KafkaPassword != "" {
		sc.Net.SASL.Enable = true
		sc.Net.SASL.Mechanism = sarama.SASLTypePlaintext
		sc.Net.SASL.User = cfg.KafkaUsername
		sc.Net.SASL.Password = cfg.KafkaPassword
		sc.Net.SASL.Handshake = true
	}
	sc.Net.DialTimeout = 3 * time.Second
	sc.Metadata.Retry.Max = 2
	sc.Metadata.Retry.Backoff = 100 * time.Millisecond
	sc.Metadata.RefreshFrequency = time.Minute
	// Only the application's own topic is needed; fetching every topic's
	// metadata would grow with the cluster.
	sc.Metadata.Full = false
	sc.Metadata.AllowAutoTopicCreation = false

	sc.Producer.RequiredAcks = sarama.WaitForAll
	sc.Producer.Partitioner = sarama.NewManualPartitioner
	sc.Producer.Return.Successes = true
	sc.Producer.Return.Errors = true
	sc.Producer.MaxMessageBytes = MaxMessageBytes
	sc.Producer.Retry.Max = 10
	sc.Producer.Retry.Backoff = 100 * time.Millisecond
	sc.Producer.Compression = sarama.CompressionNone

	// Long polls return as soon as a record arrives; a short MaxWait keeps
	// an idle consumer's first record quick on brokers that honour MinBytes loosely.
	sc.Consumer.Fetch.Min = 1
	sc.Consumer.MaxWaitTime = 100 * time.Millisecond
	sc.Consumer.Return.Errors = true
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sc.ChannelBufferSize = 256
	return sc, nil
}

// Connect opens a client for app and its producer. The error says what to fix.
func Connect(ctx context.Context, cfg config.Backend, app string) (*Client, error) {
	sc, err := SaramaConfig(cfg, "kar-"+app)
	if err != nil {
		return nil, err
	}
	ch := make(chan result, 1)
	go func() {
		c, err := sarama.NewClient(cfg.KafkaBrokers, sc)
		ch <- result{c, err}
	}()
	var rs []result
	select {
	case r := <-ch:
		rs = append(rs, r)
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.c != nil {
				r.c.Close()
			}
		}()
		return nil, ctx.Err()
	}
	for _, r := range rs {
		if r.err != nil {
			closeAll(rs)
			return nil, explain(cfg, r.err)
		}
	}
	// A client that needs no topic yet has not talked to any broker: ask
	// for the app's topic now, so a bad address or password fails here with
	// a clear message rather than later in the middle of a join.
	if err := rs[0].c.RefreshMetadata(Topic(app)); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		closeAll(rs)
		return nil, explain(cfg, err)
	}
	p, err := sarama.NewAsyncProducerFromClient(rs[0].c)
	if err != nil {
		closeAll(rs)
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	c := &Client{Client: rs[0].c, producer: p, done: make(chan struct{}), meshTopic: Topic(app)}
	c.meshConfig, _ = cfg.TopicConfig() // checked by cfg.Validate
	c.watch(p)
	return c, nil
}

// watch returns p's acknowledgements and errors to the producers' callers.
func (c *Client) watch(p sarama.AsyncProducer) {
	c.wg.Add(2)
	go c.acks(p)
	go c.errs(p)
}

// ResetProducer replaces the producer with a fresh one. sarama's producer
// opens a circuit breaker for 10 s after a partition's leader cannot be
// found three times (the topic was lost with a broker that came back
// empty); once the topic exists again, a fresh producer sends at once.
// Records the old producer still holds fail and are retried by their
// callers.
func (c *Client) ResetProducer() error {
	p, err := sarama.NewAsyncProducerFromClient(c.Client)
	if err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	c.mu.Lock()
	old := c.producer
	c.producer = p
	c.mu.Unlock()
	c.watch(p)
	go old.AsyncClose()
	return nil
}

type result struct {
	c   sarama.Client
	err error
}

func closeAll(rs []result) {
	for _, r := range rs {
		if r.c != nil {
			r.c.Close()
		}
	}
}

func explain(cfg config.Backend, err error) error {
	brokers := strings.Join(cfg.KafkaBrokers, ",")
	if errors.Is(err, sarama.ErrSASLAuthenticationFailed) || strings.Contains(err.Error(), "SASL") {
		return fmt.Errorf("Kafka at %s refused the credentials: check KAFKA_USERNAME and KAFKA_PASSWORD", brokers)
	}
	if errors.Is(err, sarama.ErrOutOfBrokers) || errors.Is(err, sarama.ErrClosedClient) || isNetErr(err) {
		hint := "is it running? For a local backend run `kar dev` and `source scripts/kar-env-local.sh`"
		if cfg.KafkaEnableTLS || cfg.KafkaPassword != "" {
			hint = "check KAFKA_BROKERS, KAFKA_ENABLE_TLS, KAFKA_USERNAME and KAFKA_PASSWORD"
		}
		return fmt.Errorf("cannot reach Kafka at %s: %s", brokers, hint)
	}
	return fmt.Errorf("kafka at %s: %w", brokers, err)
}

// Produce writes value to topic/partition and returns once the broker has
// acknowledged it (acks=all): a request is accepted only when it is durable.
func (c *Client) Produce(ctx context.Context, topic string, partition int32, value []byte) error {
	done := make(chan error, 1)
	msg := &sarama.ProducerMessage{Topic: topic, Partition: partition, Value: sarama.ByteEncoder(value), Metadata: done}
	select {
	case c.input() <- msg:
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return errors.New("kafka client closed")
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// input is the current producer's input channel.
func (c *Client) input() chan<- *sarama.ProducerMessage {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.producer.Input()
}

func (c *Client) acks(p sarama.AsyncProducer) {
	defer c.wg.Done()
	for m := range p.Successes() {
		m.Metadata.(chan error) <- nil
	}
}

func (c *Client) errs(p sarama.AsyncProducer) {
	defer c.wg.Done()
	for e := range p.Errors() {
		e.Msg.Metadata.(chan error) <- e.Err
	}
}

// EnsureTopic creates topic with at least partitions partitions if it does
// not exist, and returns its partition count.
func (c *Client) EnsureTopic(ctx context.Context, topic string, partitions int32) (int32, error) {
	for attempt := 0; ; attempt++ {
		if err := c.RefreshMetadata(topic); err == nil {
			if ps, err := c.Partitions(topic); err == nil && len(ps) > 0 {
				return int32(len(ps)), nil
			}
		}
		// The admin shares the client; it is never closed, since closing it would close the client.
		admin, err := sarama.NewClusterAdminFromClient(c.Client)
		if err != nil {
			return 0, fmt.Errorf("kafka admin: %w", err)
		}
		detail := &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: c.replication()}
		if topic == c.meshTopic {
			detail.ConfigEntries = c.meshConfig
		}
		err = admin.CreateTopic(topic, detail, false)
		if err != nil && !errors.Is(err, sarama.ErrTopicAlreadyExists) && !strings.Contains(err.Error(), "already exists") {
			if attempt >= 3 {
				return 0, fmt.Errorf("create topic %s: %w", topic, err)
			}
		}
		if attempt >= 20 {
			return 0, fmt.Errorf("topic %s did not appear after creation", topic)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		}
	}
}

// GrowTopic raises topic's partition count to at least want.
func (c *Client) GrowTopic(ctx context.Context, topic string, want int32) (int32, error) {
	// The admin shares the client; it is never closed, since closing it would close the client.
	admin, err := sarama.NewClusterAdminFromClient(c.Client)
	if err != nil {
		return 0, fmt.Errorf("kafka admin: %w", err)
	}
	if err := admin.CreatePartitions(topic, want, nil, false); err != nil && !strings.Contains(err.Error(), "already has") && !errors.Is(err, sarama.ErrInvalidPartitions) {
		return 0, fmt.Errorf("add partitions to %s: %w", topic, err)
	}
	if err := c.RefreshMetadata(topic); err != nil {
		return 0, err
	}
	ps, err := c.Partitions(topic)
	return int32(len(ps)), err
}

func (c *Client) replication() int16 {
	if len(c.Brokers()) >= 3 {
		return 3
	}
	return 1
}

// DeleteTopics removes topics (kar purge).
func (c *Client) DeleteTopics(topics ...string) error {
	// The admin shares the client; it is never closed, since closing it would close the client.
	admin, err := sarama.NewClusterAdminFromClient(c.Client)
	if err != nil {
		return err
	}
	for _, t := range topics {
		if err := admin.DeleteTopic(t); err != nil && !errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
			return fmt.Errorf("delete topic %s: %w", t, err)
		}
	}
	return nil
}

// Close stops the producer (flushing what it holds) and the client.
func (c *Client) Close() error {
	close(c.done)
	c.mu.RLock()
	p := c.producer
	c.mu.RUnlock()
	err := p.Close()
	c.wg.Wait()
	if cerr := c.Client.Close(); err == nil {
		err = cerr
	}
	return err
}

func isNetErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}
