package mesh

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
)

// ErrUnknownRequest is returned by Await for an id it never issued or already answered.
var ErrUnknownRequest = errors.New("unknown request id")

// onResponse completes a pending call, passes a response on to a sidecar
// that moved partitions, or drops a response whose caller is gone.
func (m *Mesh) onResponse(env *Envelope, from int32) {
	if env.To == m.id {
		m.mu.Lock()
		ch := m.pending[rootID(env.ID)]
		m.mu.Unlock()
		if ch != nil {
			// The waiter forgets the id once answered; a duplicate
			// response (at-least-once delivery) finds the slot full.
			select {
			case ch <- env:
			default:
			}
		}
		return
	}
	if mem := m.view.Load().byID[env.To]; mem != nil && mem.Partition != from {
		m.forward(env, mem, func() {})
	}
}

// newRequest fills in what every request this sidecar sends carries.
func (m *Mesh) newRequest(req *Envelope) {
	req.Kind = KindRequest
	req.ID = m.id + "-" + strconv.FormatUint(m.seq.Add(1), 36)
	req.From = m.id
	m.mu.Lock()
	req.FromPart = m.self.Partition
	m.mu.Unlock()
	if req.Deadline == 0 {
		req.Deadline = time.Now().Add(m.opts.MissingComponentTimeout).UnixMilli()
	}
	if req.ActorType != "" && req.Session == "" {
		// A call from outside any actor starts a session of its own.
		req.Session = req.ID
	}
}

// send makes req durable in Kafka: on the partition of a sidecar serving
// it, or on this sidecar's own partition to wait there for one to join.
func (m *Mesh) send(ctx context.Context, req *Envelope) error {
	p := req.FromPart
	if t := m.routeTo(ctx, req, ""); t != nil {
		req.To = t.ID
		p = t.Partition
	}
	val, err := m.encode(req)
	if err != nil {
		return err
	}
	if len(val) > kafka.MaxMessageBytes {
		return ErrTooLarge
	}
	return m.produce(ctx, p, val)
}

// ErrTooLarge is returned for a request that does not fit in a Kafka record.
var ErrTooLarge = fmt.Errorf("request larger than %d bytes", kafka.MaxMessageBytes)

// Call sends a request and waits for its response.
func (m *Mesh) Call(ctx context.Context, req *Envelope) (*Envelope, error) {
	id, ch, err := m.start(ctx, req)
	if err != nil {
		return nil, err
	}
	defer m.forget(id)
	return m.wait(ctx, ch)
}

// Tell sends a request whose response nobody waits for; it returns once
// the request is durable.
func (m *Mesh) Tell(ctx context.Context, req *Envelope) error {
	req.Async = true
	m.newRequest(req)
	return m.send(ctx, req)
}

// Promise sends a request and returns its id for Await. A promise not
// awaited within PromiseTTL is forgotten.
func (m *Mesh) Promise(ctx context.Context, req *Envelope) (string, error) {
	id, _, err := m.start(ctx, req)
	if err == nil {
		m.mu.Lock()
		m.promised[id] = time.Now()
		m.mu.Unlock()
	}
	return id, err
}

// PromiseTTL bounds how long an unawaited promise is kept.
const PromiseTTL = time.Hour

// placementCacheMax bounds the placements cached here; past it the cache
// starts afresh (placements are only a shortcut to Redis).
const placementCacheMax = 100000

// sweep forgets stale promises and bounds the placement cache.
func (m *Mesh) sweep(now time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, t := range m.promised {
		if now.Sub(t) > PromiseTTL {
			delete(m.promised, id)
			delete(m.pending, id)
		}
	}
	if len(m.placements) > placementCacheMax {
		m.placements = map[string]string{}
	}
}

// Await waits for the response to a Promise.
func (m *Mesh) Await(ctx context.Context, id string) (*Envelope, error) {
	m.mu.Lock()
	ch := m.pending[id]
	m.mu.Unlock()
	if ch == nil {
		return nil, ErrUnknownRequest
	}
	// An await that gives up leaves the promise awaitable again.
	resp, err := m.wait(ctx, ch)
	if err == nil {
		m.forget(id)
	}
	return resp, err
}

func (m *Mesh) forget(id string) {
	m.mu.Lock()
	delete(m.pending, id)
	delete(m.promised, id)
	m.mu.Unlock()
}

func (m *Mesh) start(ctx context.Context, req *Envelope) (string, chan *Envelope, error) {
	m.newRequest(req)
	ch := make(chan *Envelope, 1)
	m.mu.Lock()
	m.pending[req.ID] = ch
	m.mu.Unlock()
	if err := m.send(ctx, req); err != nil {
		m.forget(req.ID)
		return "", nil, err
	}
	return req.ID, ch, nil
}

func (m *Mesh) wait(ctx context.Context, ch chan *Envelope) (*Envelope, error) {
	select {
	case resp := <-ch:
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
