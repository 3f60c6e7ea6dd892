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
//
// A backend counts as lost when nothing has worked with it for a lease's
// lifetime (Redis: the lease renewals, every quarter lease; Kafka: fetches,
// which a broker answers at least every fetch wait, and produces). Time
// since the last success, not a count of failures, decides: a call to an
// unreachable backend may take seconds to fail.
type health struct {
	mu       sync.Mutex
	problems map[string]string
	leaseTTL time.Duration

	// redisOKAt is the Unix ns of the last successful lease renewal:
	// read for every record (fence), so an atomic.
	redisOKAt atomic.Int64
	redisErr  error // last failure since then
	// redisBackAt is when Redis answered again after failing.
	redisBackAt time.Time

	// kafkaOKAt is the Unix ns of the last fetch or produce that worked:
	// updated on the hot path, so an atomic rather than under mu.
	kafkaOKAt atomic.Int64
	kafkaErr  error
}

// Kinds of problem.
const problemNoPartition = "partition"

func newHealth(leaseTTL time.Duration) *health {
	h := &health{problems: map[string]string{}, leaseTTL: leaseTTL}
	h.redisOKAt.Store(time.Now().UnixNano())
	h.kafkaOKAt.Store(time.Now().UnixNano())
	return h
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

// redisFailed notes a failed lease renewal.
func (h *health) redisFailed(err error) {
	h.mu.Lock()
	h.redisErr = err
	h.mu.Unlock()
}

// redisOK notes a lease renewal that worked.
func (h *health) redisOK() {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	// Renewals come every quarter lease: a longer gap is an outage too,
	// also when one slow call waited it out without failing.
	if h.redisErr != nil || now.Sub(h.lastRenewal()) > h.leaseTTL/2 {
		h.redisBackAt = now
	}
	h.redisOKAt.Store(now.UnixNano())
	h.redisErr = nil
}

func (h *health) lastRenewal() time.Time { return time.Unix(0, h.redisOKAt.Load()) }

// leaseLapsed tells whether the leases may have expired: no renewal has
// worked for a lease's lifetime.
func (h *health) leaseLapsed() bool { return time.Since(h.lastRenewal()) > h.leaseTTL }

// kafkaFailed notes a failed fetch or produce.
func (h *health) kafkaFailed(err error) {
	h.mu.Lock()
	h.kafkaErr = err
	h.mu.Unlock()
}

// kafkaOK notes a fetch or produce that worked; it is on the hot path.
func (h *health) kafkaOK() { h.kafkaOKAt.Store(time.Now().UnixNano()) }

// recentRedisOutage tells whether Redis failed within the last d: leases
// may have expired for every sidecar at once, and their owners need time to
// take them again before anyone adopts their partitions.
func (h *health) recentRedisOutage(d time.Duration) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	// A renewal overdue by more than a quarter lease is an outage still
	// going on, even before any call failed: one renewal may sit for
	// seconds in the client's dial retries.
	return h.redisErr != nil || time.Since(h.lastRenewal()) > h.leaseTTL/2 ||
		(!h.redisBackAt.IsZero() && time.Since(h.redisBackAt) < d)
}

// err is nil when the sidecar can serve, else says why not.
func (h *health) err() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	msgs := make([]string, 0, len(h.problems)+2)
	for _, m := range h.problems {
		msgs = append(msgs, m)
	}
	now := time.Now()
	if since := now.Sub(h.lastRenewal()); since > h.leaseTTL {
		msg := "no lease renewal in Redis for " + since.Round(time.Millisecond).String()
		if h.redisErr != nil {
			msg += ": " + h.redisErr.Error()
		}
		msgs = append(msgs, msg)
	}
	// Fetches return at least every fetch wait (0.5 s) even when idle.
	if since := now.Sub(time.Unix(0, h.kafkaOKAt.Load())); since > max(h.leaseTTL, 2*time.Second) {
		msg := "no fetch from Kafka for " + since.Round(time.Millisecond).String()
		if h.kafkaErr != nil {
			msg += ": " + h.kafkaErr.Error()
		}
		msgs = append(msgs, msg)
	}
	if len(msgs) == 0 {
		return nil
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
