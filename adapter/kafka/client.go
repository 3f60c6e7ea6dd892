package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
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
	// producer, sarama's, serves Produce for a cluster older than Kafka
	// 0.11 (nil otherwise); ResetProducer swaps it, Produce reads it under
	// mu.
	mu       sync.RWMutex
	producer sarama.AsyncProducer
	// w writes Produce's records (writer.go); nil for a cluster older
	// than Kafka 0.11.
	w    *writer
	done chan struct{}
	wg   sync.WaitGroup
	// meshTopic gets meshConfig (-kafka_topic_config) when kar creates it.
	meshTopic  string
	meshConfig map[string]*string
	// replicas is -kafka_replication_factor (0: kar chooses).
	replicas int16
}

// sarama's metrics (go-metrics histograms updated on every request) cost a
// tenth of a busy sidecar's CPU and nobody reads them. go-metrics turns them
// off with a package variable that sarama's brokers read as they work: it is
// set once, here, and not by SaramaConfig, which sidecars call again while
// their clients run (a data race the race detector found).
func init() { metrics.UseNilMetrics = true }

// SaramaConfig turns the backend settings into a sarama configuration: TLS,
// SASL PLAIN (user `token` by default, as managed Event Streams wants) and
// the protocol version.
func SaramaConfig(cfg config.Backend, clientID string) (*sarama.Config, error) {
	sc := sarama.NewConfig()
	sc.MetricRegistry = metrics.NewRegistry()
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
	producerConfig(sc, cfg)
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
	c := &Client{Client: rs[0].c, done: make(chan struct{}), meshTopic: Topic(app), replicas: int16(cfg.KafkaReplicationFactor)}
	c.meshConfig, _ = cfg.TopicConfig() // checked by cfg.Validate
	if sc.Version.IsAtLeast(sarama.V0_11_0_0) {
		c.w = newWriter(c, sc)
		if err := c.w.start(); err != nil {
			c.Close()
			return nil, explain(cfg, err)
		}
	}
	return c, nil
}

// producerConfig sets what kar's producer needs for a record the mesh
// accepted to survive a broker: acks=all (every in-sync replica has it),
// and, where the cluster speaks Kafka 0.11 or later, an idempotent
// producer (the writer's), so that a batch sent again (its
// acknowledgement was lost, or the partition's leader moved meanwhile) is
// written once and in order. Idempotence needs one request in flight per
// broker connection (Net.MaxOpenRequests=1): the writer then batches what
// arrives while a produce is out, so the broker sees fewer, larger
// requests (docs/scaling.md gives the measured cost). Only the mesh client gets it;
// kar's read-only clients (kar get, the scaler) keep sarama's pipelining.
func producerConfig(sc *sarama.Config, cfg config.Backend) {
	// acks=all is set for every client in SaramaConfig.
	if !cfg.KafkaNoIdempotence && sc.Version.IsAtLeast(sarama.V0_11_0_0) {
		sc.Producer.Idempotent = true
		sc.Net.MaxOpenRequests = 1
		// InitProducerID is retried 50 times by default; a broker that
		// answers but will not give an id should not stall a start.
		sc.Producer.Transaction.Retry.Max = 10
	}
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
	c.mu.Lock()
	old := c.producer
	c.producer = nil // the next record makes a fresh one (input)
	c.mu.Unlock()
	if old != nil {
		go old.AsyncClose()
	}
	if c.w != nil {
		return c.w.reset()
	}
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
	if c.w != nil {
		return c.write(ctx, topic, partition, value)
	}
	op := produceOps.Get().(*produceOp)
	op.val = value
	op.msg = sarama.ProducerMessage{Topic: topic, Partition: partition, Value: &op.val, Metadata: op.done}
	back, err := c.produce(ctx, &op.msg, op.done)
	if back && producerReset(err) {
		op.msg.Metadata = op.done
		back, err = c.produce(ctx, &op.msg, op.done)
	}
	if back {
		// sarama handed the record back: nothing refers to op any more.
		op.msg, op.val = sarama.ProducerMessage{}, nil
		produceOps.Put(op)
	}
	return err
}

// write has the writer produce value and waits for the outcome.
func (c *Client) write(ctx context.Context, topic string, partition int32, value []byte) error {
	w := writeWaits.Get().(*writeWait)
	c.w.produce(topic, partition, value, w.tell)
	select {
	case err := <-w.done:
		writeWaits.Put(w)
		return err
	case <-ctx.Done():
		// The writer still holds w: it is not reused.
		return ctx.Err()
	}
}

// writeWait is how write waits for the writer, kept in a pool (its
// channel and its method value would be two allocations per record).
type writeWait struct {
	done chan error
	tell func(error)
}

var writeWaits = sync.Pool{New: func() any {
	w := &writeWait{done: make(chan error, 1)}
	w.tell = func(err error) { w.done <- err }
	return w
}}

// ProduceAsync writes value to topic/partition as Produce does, without
// waiting: done is told the outcome on the goroutine that read the
// broker's answer, so it must not block. It saves the producer a wake-up
// (its goroutine need not wait for the acknowledgement).
func (c *Client) ProduceAsync(topic string, partition int32, value []byte, done func(error)) {
	if c.w == nil {
		go func() { done(c.Produce(context.Background(), topic, partition, value)) }()
		return
	}
	c.w.produce(topic, partition, value, done)
}

// Warm opens the connections that produces to topic's partitions go on,
// so that the first record produced to one does not wait for its
// connection: a new replica's first answer and a new caller's first
// request did.
func (c *Client) Warm(topic string) {
	if c.w != nil {
		c.w.warm(topic)
	}
}

// produceOp is what Produce hands to sarama for one record, kept in a pool
// (three allocations per record otherwise). It goes back to the pool only
// once sarama has reported the record's outcome: a Produce that gave up
// (ctx) leaves it to sarama and the garbage collector.
type produceOp struct {
	msg  sarama.ProducerMessage
	val  sarama.ByteEncoder // msg.Value points here: no boxing per record
	done chan error
}

var produceOps = sync.Pool{New: func() any { return &produceOp{done: make(chan error, 1)} }}

// producerReset tells whether the broker refused a record only because the
// idempotent producer's sequence did not match what it knows of the
// partition: the partition is new (its topic was deleted and created again,
// or lost with a broker that came back empty) while the producer had
// written to its predecessor. Nothing was written, and sarama has already
// started a new epoch, whose sequences start over: sending the record
// once more writes it.
func producerReset(err error) bool {
	return errors.Is(err, sarama.ErrOutOfOrderSequenceNumber) || errors.Is(err, sarama.ErrUnknownProducerID)
}

// produce hands msg to the producer and waits for its outcome on done.
// back tells whether that outcome came, so that sarama holds msg no more.
func (c *Client) produce(ctx context.Context, msg *sarama.ProducerMessage, done chan error) (back bool, err error) {
	in, err := c.input()
	if err != nil {
		return true, err
	}
	select {
	case in <- msg:
	case <-ctx.Done():
		return true, ctx.Err()
	case <-c.done:
		return true, errors.New("kafka client closed")
	}
	select {
	case err := <-done:
		return true, err
	case <-ctx.Done():
		return false, ctx.Err()
	}
}

// input is the input channel of sarama's producer, which is made when a
// record first needs it: the mesh's records go through the writer, and
// sarama's producer serves only ProduceMessages (events) and a cluster
// older than Kafka 0.11. Made at every start, it took a producer id of its
// own and ran goroutines that, in most sidecars, never produced.
func (c *Client) input() (chan<- *sarama.ProducerMessage, error) {
	c.mu.RLock()
	p := c.producer
	c.mu.RUnlock()
	if p != nil {
		return p.Input(), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.done:
		return nil, errClosed
	default:
	}
	if c.producer == nil {
		p, err := c.newProducer()
		if err != nil {
			return nil, err
		}
		c.producer = p
		c.watch(p)
	}
	return c.producer.Input(), nil
}

// newProducer makes sarama's producer. A cluster that refuses it a
// producer id (an old broker, or an ACL without IdempotentWrite) gets one
// without idempotence, as the writer does (writer.start). c.mu held.
func (c *Client) newProducer() (sarama.AsyncProducer, error) {
	sc := c.Client.Config()
	if c.w != nil && sc.Producer.Idempotent && !c.w.isIdempotent() {
		sc.Producer.Idempotent = false // the writer was refused one already
	}
	p, err := sarama.NewAsyncProducerFromClient(c.Client)
	if err != nil && sc.Producer.Idempotent && !isNetErr(err) {
		slog.Warn("Kafka refused an idempotent producer; a record the producer retries may be written twice", "err", err)
		sc.Producer.Idempotent = false
		p, err = sarama.NewAsyncProducerFromClient(c.Client)
	}
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	return p, nil
}

func (c *Client) acks(p sarama.AsyncProducer) {
	defer c.wg.Done()
	for m := range p.Successes() {
		report(m, nil)
	}
}

func (c *Client) errs(p sarama.AsyncProducer) {
	defer c.wg.Done()
	for e := range p.Errors() {
		report(e.Msg, e.Err)
	}
}

// report hands a record's outcome to its producer: Produce waits on a
// chan error, ProduceMessages on a chan of outcomes that say which record.
func report(m *sarama.ProducerMessage, err error) {
	switch ch := m.Metadata.(type) {
	case chan error:
		ch <- err
	case chan *sarama.ProducerError:
		ch <- &sarama.ProducerError{Msg: m, Err: err}
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
		detail := &sarama.TopicDetail{NumPartitions: partitions}
		if topic == c.meshTopic {
			detail.ConfigEntries = c.meshConfig
		}
		err := c.createTopic(topic, detail)
		if errors.Is(err, sarama.ErrInvalidReplicationFactor) || errors.Is(err, sarama.ErrInvalidConfig) {
			return 0, err // the settings, not the moment: trying again cannot help
		}
		if err != nil && !isTopicExists(err) {
			if attempt >= 3 {
				return 0, err
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

// replication is the replication factor of a topic kar creates:
// -kafka_replication_factor, or else 3 (what a record needs to survive one
// broker lost while another is down for maintenance) on a cluster of that
// many brokers, and every broker on a smaller one.
func (c *Client) replication() int16 {
	if c.replicas > 0 {
		return c.replicas
	}
	return int16(min(3, max(len(c.Brokers()), 1)))
}

// minInSync is min.insync.replicas for a topic of rf replicas: with acks=all
// a record is acknowledged once every in-sync replica has it, and a broker
// lets the in-sync set shrink to the leader alone unless told otherwise (its
// default is 1), so a record acknowledged then lives on one disk. 2 of 3
// keeps two copies of every acknowledged record and still accepts writes
// with one broker down. Fewer than 3 replicas keep the broker's default: 2
// of 2 would stop every write while one broker restarts.
func minInSync(rf int16) string {
	if rf >= 3 {
		return "2"
	}
	return ""
}

// createTopic creates topic as detail says, the replication factor (when 0)
// and min.insync.replicas (when absent) chosen as above. A managed cluster
// that refuses to be told min.insync.replicas (IBM Event Streams allows a
// few settings only, and keeps 2 itself) gets the topic without it.
func (c *Client) createTopic(topic string, detail *sarama.TopicDetail) error {
	// The admin shares the client; it is never closed, since closing it would close the client.
	admin, err := sarama.NewClusterAdminFromClient(c.Client)
	if err != nil {
		return fmt.Errorf("kafka admin: %w", err)
	}
	d := *detail
	chosen := d.ReplicationFactor <= 0 // by kar, not by the caller
	if chosen {
		d.ReplicationFactor = c.replication()
	}
	added := false
	if v := minInSync(d.ReplicationFactor); v != "" && d.ConfigEntries["min.insync.replicas"] == nil {
		d.ConfigEntries = maps.Clone(d.ConfigEntries)
		if d.ConfigEntries == nil {
			d.ConfigEntries = map[string]*string{}
		}
		d.ConfigEntries["min.insync.replicas"] = &v
		added = true
	}
	err = admin.CreateTopic(topic, &d, false)
	if added && (errors.Is(err, sarama.ErrPolicyViolation) || errors.Is(err, sarama.ErrInvalidConfig)) {
		delete(d.ConfigEntries, "min.insync.replicas")
		err = admin.CreateTopic(topic, &d, false)
	}
	switch {
	case err == nil || isTopicExists(err):
		return err
	case errors.Is(err, sarama.ErrInvalidReplicationFactor) && chosen:
		return fmt.Errorf("create topic %s with %d replicas on a cluster of %d brokers (set -kafka_replication_factor / KAR_KAFKA_REPLICATION_FACTOR, or 0 to let kar choose): %w",
			topic, d.ReplicationFactor, len(c.Brokers()), err)
	case errors.Is(err, sarama.ErrInvalidReplicationFactor):
		return fmt.Errorf("create topic %s with %d replicas on a cluster of %d brokers: %w", topic, d.ReplicationFactor, len(c.Brokers()), err)
	}
	return fmt.Errorf("create topic %s: %w", topic, err)
}

func isTopicExists(err error) bool {
	return errors.Is(err, sarama.ErrTopicAlreadyExists) || err != nil && strings.Contains(err.Error(), "already exists")
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
	if c.w != nil {
		c.w.close()
	}
	c.mu.RLock()
	p := c.producer
	c.mu.RUnlock()
	var err error
	if p != nil {
		err = p.Close()
	}
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
