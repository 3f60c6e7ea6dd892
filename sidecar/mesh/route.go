package mesh

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/IBM/sarama"
)

// serves tells whether this sidecar's component takes env.
func (m *Mesh) serves(env *Envelope) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leaving {
		return false
	}
	if env.ActorType != "" {
		if m.withdrawn {
			// Draining: an instance still here takes its calls until it
			// is retired (Drain); the others are placed elsewhere.
			_, here := m.instances[actorKey(env.ActorType, env.ActorID)]
			return here
		}
		return contains(m.self.Actors, env.ActorType)
	}
	return contains(m.self.Services, env.Service)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func backoff(attempt int) time.Duration {
	d := 10 * time.Millisecond << min(attempt, 6)
	return min(d, 500*time.Millisecond)
}

// pause waits d unless the sidecar starts leaving.
func (m *Mesh) pause(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-m.stopping:
		return false
	}
}

// partitionOf is where sidecar id reads now, or fallback if unknown.
func (m *Mesh) partitionOf(id string, fallback int32) int32 {
	if mem := m.view.Load().byID[id]; mem != nil {
		return mem.Partition
	}
	return fallback
}

// encode renders env as a record of this sidecar's application.
func (m *Mesh) encode(env *Envelope) ([]byte, error) {
	env.App = m.opts.App
	return env.Encode()
}

// valueBufs holds the buffers of record values between produces. A value
// goes back only once the Kafka client told its outcome: it holds it until
// then, and a produce that gave up waiting (ctx) leaves it to the client
// and the garbage collector.
var valueBufs = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledValue bounds the values whose buffers are kept for reuse.
const maxPooledValue = 64 << 10

// encodePooled is encode into a buffer of valueBufs; release gives it back.
func (m *Mesh) encodePooled(env *Envelope) (val []byte, buf *[]byte, err error) {
	buf = valueBufs.Get().(*[]byte)
	env.App = m.opts.App
	val, err = env.AppendEncoded((*buf)[:0])
	return val, buf, err
}

// release returns the buffer of val, acknowledged by the broker, to valueBufs.
func release(buf *[]byte, val []byte) {
	if cap(val) <= maxPooledValue {
		*buf = val[:0]
		valueBufs.Put(buf)
	}
}

// produceRetry writes env to partition p, retrying while Kafka is
// unreachable; it gives up only when the sidecar leaves.
func (m *Mesh) produceRetry(env *Envelope, p int32) bool {
	val, buf, err := m.encodePooled(env)
	if err != nil {
		m.log.Error("cannot encode message", "err", err)
		return true
	}
	for attempt := 0; ; attempt++ {
		err := m.produce(context.Background(), p, val)
		if err == nil {
			release(buf, val)
			return true
		}
		if attempt%10 == 0 {
			m.log.Warn("kafka unavailable, retrying", "err", err)
		}
		if !m.pause(backoff(attempt)) {
			return false
		}
	}
}

func (m *Mesh) produce(ctx context.Context, p int32, val []byte) error {
	done := make(chan error, 1)
	m.produceAsync(p, val, func(err error) { done <- err })
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// produceAsync writes val to partition p without waiting: done is told the
// outcome on the Kafka client's goroutine, so it must not block.
func (m *Mesh) produceAsync(p int32, val []byte, done func(error)) {
	start := time.Now()
	m.kc.ProduceAsync(m.topic, p, val, func(err error) {
		if errors.Is(err, sarama.ErrInvalidPartition) {
			// The topic grew since the metadata was read: read it again,
			// off the Kafka client's goroutine.
			go func() {
				if rerr := m.kc.RefreshMetadata(m.topic); rerr == nil {
					err = m.kc.Produce(context.Background(), m.topic, p, val)
				}
				m.produced(start, err, done)
			}()
			return
		}
		m.produced(start, err, done)
	})
}

// produced records a produce's outcome and tells done.
func (m *Mesh) produced(start time.Time, err error, done func(error)) {
	m.opts.Metrics.Produce(time.Since(start), err)
	if err != nil {
		m.kafkaFailed(err)
	} else {
		m.health.kafkaOK()
	}
	done(err)
}

// target chooses the live sidecar for env, or nil when none serves it.
func (m *Mesh) target(env *Envelope) *Member {
	v := m.view.Load()
	ms := v.byService[env.Service]
	if env.ActorType != "" {
		ms = v.byActor[env.ActorType]
	}
	t := pick(ms, &m.rr)
	if t != nil && t.ID == m.id && m.isWithdrawn() {
		// The view predates this sidecar's withdrawal.
		for _, o := range ms {
			if o.ID != m.id {
				return o
			}
		}
		return nil
	}
	return t
}

// route passes on a request this sidecar does not serve: to a live
// sidecar that does, or it holds it until one joins.
func (m *Mesh) route(env *Envelope, finish func()) {
	if env.ActorType != "" {
		// Placement takes a Redis round trip: off the reading goroutine.
		m.work.Add(1)
		go func() {
			defer m.work.Done()
			if t := m.routeTo(context.Background(), env, m.id); t != nil {
				m.forward(env, t, finish)
				return
			}
			m.hold(env, finish)
		}()
		return
	}
	if t := m.target(env); t != nil && t.ID != m.id {
		m.forward(env, t, finish)
		return
	}
	m.hold(env, finish)
}

// routeTo chooses the live sidecar for env other than exclude: the
// placement of an actor instance, or a sidecar serving the service.
func (m *Mesh) routeTo(ctx context.Context, env *Envelope, exclude string) *Member {
	if env.ActorType != "" {
		t, err := m.place(ctx, env.ActorType, env.ActorID, exclude)
		if err != nil {
			m.log.Warn("actor placement", "err", err)
			return nil
		}
		return t
	}
	if t := m.target(env); t != nil && t.ID != exclude {
		return t
	}
	return nil
}

func (m *Mesh) forward(env *Envelope, t *Member, finish func()) {
	env.To = t.ID
	env.MayRepeat = true
	m.work.Add(1)
	go func() {
		defer m.work.Done()
		if m.produceRetry(env, t.Partition) {
			finish()
		}
	}()
}
