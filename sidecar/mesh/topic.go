package mesh

import (
	"context"
	"errors"
	"time"

	"github.com/IBM/sarama"
	"github.com/eapache/go-resiliency/breaker"
)

// Keeping the application's topic. A broker that comes back without the
// topic (a cluster that lost it, or the test broker, which keeps records
// in memory) leaves every sidecar reading and writing a topic that does
// not exist. The sidecar that notices creates it again, every sidecar
// starts its partitions over from their new beginning, and calls still
// waiting for an answer are sent again, since their requests may have been
// lost with the log.

// kafkaFailed is told of a failed fetch or produce.
func (m *Mesh) kafkaFailed(err error) {
	m.health.kafkaFailed(err)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) || errors.Is(err, breaker.ErrBreakerOpen) {
		// A missing topic, or a producer that gave up on a partition
		// for 10 s (sarama's circuit breaker, opened by three failed
		// leader lookups while the broker was unreachable): the keeper
		// restores the topic and starts a fresh producer once the broker
		// answers.
		m.wakeTopicKeeper()
	}
}

func (m *Mesh) wakeTopicKeeper() {
	select {
	case m.topicC <- struct{}{}:
	default:
	}
}

// topicLoop creates the topic again when it is found missing.
func (m *Mesh) topicLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.topicC:
		}
		m.restoreTopic(ctx)
		// At most one creation attempt a second: the other sidecars of
		// the application are trying too.
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (m *Mesh) restoreTopic(ctx context.Context) {
	missing := true
	if err := m.kc.RefreshMetadata(m.topic); err == nil {
		if ps, err := m.kc.Partitions(m.topic); err == nil && len(ps) > 0 {
			missing = false
		}
	}
	want := m.partitionsNeeded()
	n, err := m.kc.EnsureTopic(ctx, m.topic, want)
	if err == nil && n < want {
		n, err = m.kc.GrowTopic(ctx, m.topic, want)
	}
	if err != nil {
		if ctx.Err() == nil {
			m.log.Warn("cannot create the application's topic again", "topic", m.topic, "err", err)
			m.wakeTopicKeeper()
		}
		return
	}
	m.log.Warn("the application's topic was missing at the broker; it exists again", "topic", m.topic, "partitions", n)
	// sarama's producer gave up on the missing partitions for a while
	// (its circuit breaker), also when another sidecar created the topic
	// again first; a fresh one writes at once.
	if err := m.kc.ResetProducer(); err != nil {
		m.log.Warn("cannot reset the Kafka producer", "err", err)
	}
	if missing {
		// The requests of calls in flight may have been lost with it
		// (this sidecar's partitions may have held nothing yet to tell).
		m.resendPending()
	}
}

// partitionsNeeded is the partition count the topic must have: every
// partition this sidecar reads, and the configured initial count.
func (m *Mesh) partitionsNeeded() int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := m.opts.Partitions
	for p := range m.owned {
		n = max(n, p+1)
	}
	return n
}

// outOfRange is told by the reader of owned partition o that offset is not
// in the partition and that reading goes on from oldest.
func (m *Mesh) outOfRange(o *owned, offset, oldest int64) {
	if offset < oldest {
		// Behind the log's start (retention trimmed it): nothing lost
		// that this sidecar could have read.
		m.log.Warn("partition trimmed past this sidecar's position by the broker's retention", "partition", o.p, "from", offset, "to", oldest)
		o.tr.reset(oldest)
		return
	}
	// Past the log's end: the log went backwards.
	m.log.Warn("the partition's log was lost at the broker; reading it from its new start and sending waiting calls again", "partition", o.p, "position", offset, "start", oldest)
	o.tr.reset(oldest)
	o.below = 0
	m.resendPending()
}
