package mesh

import (
	"errors"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// health is what keeps this sidecar from serving, if anything: GET
// /kar/v1/system/health reports it, so that Kubernetes' probes and Code
// Engine restart a sidecar that never recovers on its own.
type health struct {
	mu       sync.Mutex
	problems map[string]string
	// redisDownSince is when Redis calls started failing (zero: they work).
	redisDownSince time.Time
	// redisBackAt is when Redis answered again after failing.
	redisBackAt time.Time
	// kafkaDownSince is when fetches or produces started failing; kafkaBad
	// lets the hot path's kafkaOK return at once while all is well.
	kafkaDownSince time.Time
	kafkaBad       atomic.Bool
	leaseTTL       time.Duration
}

// Kinds of problem.
const (
	problemNoPartition = "partition"
	problemRedis       = "redis"
	problemKafka       = "kafka"
)

func newHealth(leaseTTL time.Duration) *health {
	return &health{problems: map[string]string{}, leaseTTL: leaseTTL}
}

func (h *health) set(kind, msg string) {
	h.mu.Lock()
	h.problems[kind] = msg
	h.mu.Unlock()
}

func (h *health) clear(kind string) {
	h.mu.Lock()
	delete(h.problems, kind)
	h.mu.Unlock()
}

// redisFailed notes a failed Redis call of the sidecar's own loops: past a
// lease's lifetime the sidecar has lost its leases and cannot serve.
func (h *health) redisFailed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.redisDownSince.IsZero() {
		h.redisDownSince = now
	}
	if now.Sub(h.redisDownSince) >= h.leaseTTL {
		h.problems[problemRedis] = "cannot reach Redis since " + h.redisDownSince.UTC().Format(time.RFC3339) + ": " + err.Error()
	}
}

func (h *health) redisOK() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.redisDownSince.IsZero() {
		h.redisBackAt = time.Now()
	}
	h.redisDownSince = time.Time{}
	delete(h.problems, problemRedis)
}

// kafkaFailed notes a failed fetch or produce; failing for a lease's
// lifetime makes the sidecar unhealthy.
func (h *health) kafkaFailed(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.kafkaDownSince.IsZero() {
		h.kafkaDownSince = now
		h.kafkaBad.Store(true)
	}
	if now.Sub(h.kafkaDownSince) >= h.leaseTTL {
		h.problems[problemKafka] = "cannot use Kafka since " + h.kafkaDownSince.UTC().Format(time.RFC3339) + ": " + err.Error()
	}
}

// kafkaOK notes a fetch or produce that worked.
func (h *health) kafkaOK() {
	if !h.kafkaBad.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.kafkaDownSince = time.Time{}
	h.kafkaBad.Store(false)
	delete(h.problems, problemKafka)
}

// recentRedisOutage tells whether Redis failed within the last d: leases
// may have expired for every sidecar at once, and their owners need time to
// take them again before anyone adopts their partitions.
func (h *health) recentRedisOutage(d time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.redisDownSince.IsZero() || (!h.redisBackAt.IsZero() && time.Since(h.redisBackAt) < d)
}

// err is nil when the sidecar can serve, else says why not.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.problems) == 0 {
		return nil
	}
	msgs := make([]string, 0, len(h.problems))
	for _, m := range h.problems {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	return errors.New(strings.Join(msgs, "; "))
}

// Health is nil when this sidecar can serve, else an error saying why not
// (no partition, Redis or Kafka unreachable).
func (m *Mesh) Health() error {
	if m.isLeaving() {
		return errors.New("leaving the mesh")
	}
	return m.health.err()
}
