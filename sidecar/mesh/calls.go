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

// onResponse completes a pending call, or passes a response on to its
// caller's sidecar when that one reads another partition now (it moved
// after losing its lease; this sidecar adopted the old one).
func (m *Mesh) onResponse(env *Envelope, from int32, finish func()) {
	if env.To != m.id {
		m.passResponse(&stray{env: env, from: from, finish: finish, seen: time.Now()})
		return
	}
	m.complete(env)
	finish()
}

// complete hands a response to the call waiting for it, if any.
func (m *Mesh) complete(env *Envelope) {
	m.mu.Lock()
	id := rootID(env.ID)
	c, ok := m.pending[id]
	if ok && c.req != nil {
		c.req = nil
		m.pending[id] = c
	}
	m.mu.Unlock()
	if ok {
		// The waiter forgets the id once answered; a duplicate
		// response (at-least-once delivery) finds the slot full.
		select {
		case c.ch <- env:
		default:
		}
	}
}

// call is a request of this sidecar waiting for its response, kept by
// value in Mesh.pending (one allocation fewer per call than a pointer).
type call struct {
	ch chan *Envelope
	// req is the request until its response arrives: sent again if its
	// record may have been lost with the broker's log.
	req *Envelope
	// resent is when req was last sent again: one loss of the log is
	// noticed by several partitions and by the topic keeper.
	resent time.Time
}

// resendPending sends every request still waiting for its response again:
// a partition's log was lost at the broker, and with it, maybe, the
// request or its response. Duplicates are the price of at-least-once.
func (m *Mesh) resendPending() {
	m.mu.Lock()
	var reqs []*Envelope
	now := time.Now()
	for id, c := range m.pending {
		if c.req != nil && now.Sub(c.resent) > 2*time.Second {
			c.resent = now
			m.pending[id] = c
			r := *c.req
			r.MayRepeat = true
			r.FromPart = m.self.Partition
			reqs = append(reqs, &r)
		}
	}
	m.mu.Unlock()
	if len(reqs) > 0 {
		m.log.Warn("sending calls again after the broker lost their log", "count", len(reqs))
	}
	for _, r := range reqs {
		m.work.Add(1)
		go func() {
			defer m.work.Done()
			for attempt := 0; ; attempt++ {
				if err := m.send(context.Background(), r); err == nil {
					return
				}
				if !m.pause(backoff(attempt)) {
					return
				}
			}
		}()
	}
}

// stray is a response read on a partition its caller no longer reads.
type stray struct {
	env    *Envelope
	from   int32
	finish func()
	// seen is when the caller was last seen registered.
	seen time.Time
}

// passResponse forwards a stray response to where its caller reads now.
// While the caller's registration still names the old partition (it has
// not noticed the move yet) or is missing (it is registering again after
// a Redis outage), the response waits; it is dropped only once the caller
// has been gone for strayGrace lease lifetimes: its sidecar died, and
// nobody waits for the answer.
func (m *Mesh) passResponse(s *stray) {
	mem := m.view.Load().byID[s.env.To]
	switch {
	case mem != nil && mem.Partition != s.from:
		m.forward(s.env, mem, s.finish)
		return
	case mem == nil && time.Since(s.seen) > strayGrace*m.opts.LeaseTTL:
		m.log.Info("dropping a response whose caller is gone", "id", s.env.ID, "caller", s.env.To)
		s.finish()
		return
	case mem != nil:
		s.seen = time.Now()
	}
	m.mu.Lock()
	m.strays = append(m.strays, s)
	m.mu.Unlock()
}

// strayGrace is how many lease lifetimes a caller may stay unregistered
// before its responses are dropped.
const strayGrace = 3

// retryStrays passes on the stray responses again (after each refresh of
// the view).
func (m *Mesh) retryStrays() {
	m.mu.Lock()
	strays := m.strays
	m.strays = nil
	m.mu.Unlock()
	for _, s := range strays {
		m.passResponse(s)
	}
}

// newRequest fills in what every request this sidecar sends carries.
func (m *Mesh) newRequest(req *Envelope) {
	req.Kind = KindRequest
	// One string for the id (concatenating a FormatUint made two).
	var buf [64]byte
	id := append(append(buf[:0], m.id...), '-')
	req.ID = string(strconv.AppendUint(id, m.seq.Add(1), 36))
	req.From = m.id
	m.mu.Lock()
	req.FromPart = m.self.Partition
	m.mu.Unlock()
	if req.Deadline == 0 && m.opts.MissingComponentTimeout > 0 {
		req.Deadline = time.Now().Add(m.opts.MissingComponentTimeout).UnixMilli()
	}
	if !req.Async {
		req.Parent = m.parentOf(req.Session)
	}
	if req.ActorType != "" && req.Session == "" {
		// A call from outside any actor starts a session of its own.
		req.Session = req.ID
	}
}

// send makes req durable in Kafka: on the partition of a sidecar serving
// it, or on this sidecar's own partition to wait there for one to join.
func (m *Mesh) send(ctx context.Context, req *Envelope) error {
	p, val, buf, err := m.prepare(ctx, req)
	if err != nil {
		return err
	}
	if err := m.produce(ctx, p, val); err != nil {
		return err
	}
	release(buf, val)
	return nil
}

// sendAsync is send without waiting for the broker: done is told whether
// req is durable, on the Kafka client's goroutine (it must not block).
// The error is for a request that was not sent at all.
func (m *Mesh) sendAsync(ctx context.Context, req *Envelope, done func(error)) error {
	p, val, buf, err := m.prepare(ctx, req)
	if err != nil {
		return err
	}
	m.produceAsync(p, val, func(err error) {
		release(buf, val)
		done(err)
	})
	return nil
}

// prepare chooses req's partition and encodes it.
func (m *Mesh) prepare(ctx context.Context, req *Envelope) (p int32, val []byte, buf *[]byte, err error) {
	p = req.FromPart
	if t := m.routeTo(ctx, req, ""); t != nil {
		req.To = t.ID
		p = t.Partition
	}
	val, buf, err = m.encodePooled(req)
	if err != nil {
		return 0, nil, nil, err
	}
	if len(val) > kafka.MaxMessageBytes {
		release(buf, val)
		return 0, nil, nil, ErrTooLarge
	}
	return p, val, buf, nil
}

// ErrTooLarge is returned for a request that does not fit in a Kafka record.
var ErrTooLarge = fmt.Errorf("request larger than %d bytes", kafka.MaxMessageBytes)

// Call sends a request and waits for its response.
//
// A call made outside any actor or service request waits for the response
// alone: should Kafka refuse the request, the failure comes on the call's
// channel instead (failCall), so the caller's goroutine wakes once, not
// also for the broker's acknowledgement. A nested call is recorded with
// its parent only once it is durable (orchestrate.go), so it waits for
// the acknowledgement first.
func (m *Mesh) Call(ctx context.Context, req *Envelope) (*Envelope, error) {
	m.newRequest(req)
	ch := m.addPending(req)
	defer m.forget(req.ID)
	var err error
	if req.Parent != "" {
		if err = m.send(ctx, req); err == nil {
			m.recordCall(ctx, req)
		}
	} else {
		id := req.ID
		err = m.sendAsync(ctx, req, func(err error) {
			if err != nil {
				m.failCall(id, err)
			}
		})
	}
	if err != nil {
		return nil, err
	}
	return m.wait(ctx, ch)
}

// failCall ends the call id with err, unless it was answered already.
func (m *Mesh) failCall(id string, err error) {
	m.mu.Lock()
	c, ok := m.pending[id]
	m.mu.Unlock()
	if ok {
		select {
		case c.ch <- &Envelope{Kind: kindFailed, failure: err}:
		default: // answered
		}
	}
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
	m.newRequest(req)
	if _, err := m.start(ctx, req); err != nil {
		return "", err
	}
	m.mu.Lock()
	m.promised[req.ID] = time.Now()
	m.mu.Unlock()
	return req.ID, nil
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
		m.placements = map[actorRef]string{}
	}
}

// Await waits for the response to a Promise.
func (m *Mesh) Await(ctx context.Context, id string) (*Envelope, error) {
	m.mu.Lock()
	c, ok := m.pending[id]
	m.mu.Unlock()
	if !ok {
		return nil, ErrUnknownRequest
	}
	// An await that gives up leaves the promise awaitable again.
	resp, err := m.wait(ctx, c.ch)
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

// addPending makes req (newRequest done) a call waiting for its response.
func (m *Mesh) addPending(req *Envelope) chan *Envelope {
	ch := make(chan *Envelope, 1)
	m.mu.Lock()
	m.pending[req.ID] = call{ch: ch, req: req}
	m.mu.Unlock()
	return ch
}

// start registers req (newRequest done) and returns once it is durable.
func (m *Mesh) start(ctx context.Context, req *Envelope) (chan *Envelope, error) {
	ch := m.addPending(req)
	if err := m.send(ctx, req); err != nil {
		m.forget(req.ID)
		return nil, err
	}
	m.recordCall(ctx, req)
	return ch, nil
}

func (m *Mesh) wait(ctx context.Context, ch chan *Envelope) (*Envelope, error) {
	select {
	case resp := <-ch:
		if resp.Kind == kindFailed {
			return nil, resp.failure
		}
		return resp, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}
