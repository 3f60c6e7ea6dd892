package mesh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/kar-runtime/kar/sidecar/metrics"
	"github.com/redis/go-redis/v9"
)

// Actors: an instance (type, id) lives on one sidecar at a time, named by
// its placement in Redis. Callers look the placement up (and cache it while
// the host is live); the host runs one method at a time per instance,
// except nested calls of the same session (re-entrancy).

// placeScript places an instance on the candidate ARGV[1] unless its
// placement names another host than ARGV[2] (a host the caller found
// dead, or ""), and returns the host it names then. A host is live while
// its registration key exists (it expires with the sidecar's lease); that
// key lives in the application's slot, not the instance's, so the caller
// checks it between runs (placeOn). KEYS: placement.
var placeScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] and cur ~= ARGV[2] then return cur end
if cur ~= ARGV[1] then redis.call('SET', KEYS[1], ARGV[1]) end
return ARGV[1]`)

// placeOn returns the live host of an instance, or places it on cand.
func (m *Mesh) placeOn(ctx context.Context, typ, id, cand string) (string, error) {
	key := m.keys.Placement(typ, id)
	dead := ""
	for attempt := 0; ; attempt++ {
		host, err := placeScript.Run(ctx, m.rdb, []string{key}, cand, dead).Text()
		if err != nil || host == cand || attempt == 3 {
			return host, err
		}
		live, err := m.rdb.Exists(ctx, m.keys.Sidecar(host)).Result()
		if err != nil || live == 1 {
			return host, err
		}
		// Placed on a dead host: replace it, unless the placement changed
		// meanwhile (then look at its new host).
		dead = host
	}
}

// unplaceScript deletes a placement if it still names the caller.
var unplaceScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`)

// instance is an actor instance hosted here.
type instance struct {
	typ, id string
	mu      sync.Mutex
	session string // session holding the instance, "" when free
	depth   int
	waiters []chan struct{}
	active  bool
	used    time.Time
	// refs counts the requests that took the instance from the map
	// (Mesh.instance) and have not finished with it; guarded by Mesh.mu.
	refs int
}

// actorRef keys the maps of actor instances: a struct rather than a
// concatenated string, so that a lookup allocates nothing.
type actorRef struct{ typ, id string }

func actorKey(typ, id string) actorRef { return actorRef{typ, id} }

// ownKey is actorKey for a key stored in a map: its strings are copied,
// so that the key does not keep alive the record they were read from.
func ownKey(typ, id string) actorRef { return actorRef{strings.Clone(typ), strings.Clone(id)} }

// acquire takes the instance for session, waiting while another session
// holds it; a nested call of the holding session enters at once. waited
// tells whether it had to wait.
func (in *instance) acquire(ctx context.Context, session string) error {
	_, err := in.acquireWait(ctx, session)
	return err
}

// tryAcquire takes the instance for session if it is free or held by the
// same session, without waiting.
func (in *instance) tryAcquire(session string) bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.takeLocked(session)
}

// takeLocked takes the instance if session may; in.mu is held.
func (in *instance) takeLocked(session string) bool {
	if in.session != "" && in.session != session {
		return false
	}
	in.session = session
	in.depth++
	in.used = time.Now()
	return true
}

func (in *instance) acquireWait(ctx context.Context, session string) (waited bool, err error) {
	for {
		in.mu.Lock()
		if in.takeLocked(session) {
			in.mu.Unlock()
			return waited, nil
		}
		waited = true
		ch := make(chan struct{})
		in.waiters = append(in.waiters, ch)
		in.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			in.mu.Lock()
			for i, w := range in.waiters {
				if w == ch {
					in.waiters = append(in.waiters[:i], in.waiters[i+1:]...)
					break
				}
			}
			in.mu.Unlock()
			return waited, ctx.Err()
		}
	}
}

func (in *instance) release() {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.depth--
	in.used = time.Now()
	if in.depth > 0 {
		return
	}
	in.session = ""
	if len(in.waiters) > 0 {
		// First come, first served.
		close(in.waiters[0])
		in.waiters = in.waiters[1:]
	}
}

func (in *instance) idle() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.session == "" && len(in.waiters) == 0
}

// instance returns the instance (typ, id) hosted here, made on first use,
// and counts a reference to it that the caller gives back with unref. An
// instance leaves the map once it is inactive, free and unreferenced (unref,
// or the collector after a deactivation): then no request holds it, so no
// two instances of one actor are ever in use here at once, and the map holds
// the active instances, not every actor id this sidecar has hosted.
func (m *Mesh) instance(typ, id string) *instance {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.instances[actorKey(typ, id)]
	if in == nil {
		k := ownKey(typ, id)
		in = &instance{typ: k.typ, id: k.id}
		m.instances[k] = in
	}
	in.refs++
	return in
}

// unref gives back a reference taken by instance.
func (m *Mesh) unref(in *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	in.refs--
	m.forgetUnused(in)
}

// forgetUnused removes in from the map when it is inactive, free and
// unreferenced. m.mu is held.
func (m *Mesh) forgetUnused(in *instance) {
	if in.refs > 0 {
		return
	}
	in.mu.Lock()
	unused := !in.active && in.session == "" && len(in.waiters) == 0
	in.mu.Unlock()
	if k := actorKey(in.typ, in.id); unused && m.instances[k] == in {
		delete(m.instances, k)
	}
}

// place finds the live host of an actor instance, placing it on a live
// host of its type when it has none. nil: no live host of the type.
func (m *Mesh) place(ctx context.Context, typ, id string, exclude string) (*Member, error) {
	k := actorKey(typ, id)
	v := m.view.Load()
	m.mu.Lock()
	cached := m.placements[k]
	if in := m.instances[k]; in != nil && in.isActive() {
		// Active here, so placed here: the instances hosted here are not
		// in the placement cache, where each cost a second key and copies
		// of its type and id (about 110 bytes of live heap per active
		// instance, TestActiveInstanceFootprint in test/memory).
		cached = m.id
	}
	m.mu.Unlock()
	if mem := v.byID[cached]; mem != nil && cached != exclude && contains(mem.Actors, typ) {
		return mem, nil
	}
	var cands []*Member
	for _, mem := range v.byActor[typ] {
		if mem.ID != exclude {
			cands = append(cands, mem)
		}
	}
	cand := pick(cands, &m.rr)
	if cand == nil {
		return nil, nil
	}
	host, err := m.placeOn(ctx, typ, id, cand.ID)
	if err != nil {
		return nil, fmt.Errorf("actor placement: %w", err)
	}
	mem := v.byID[host]
	if mem == nil {
		// Placed on a sidecar that joined after this view: its record says
		// where it reads, and refreshLoop brings the view up to date. Not
		// a whole read stored from here: one that began before a notice
		// and was stored after it would undo the notice (refreshLoop).
		mem = m.loadMember(ctx, host)
		select {
		case m.refreshC <- struct{}{}:
		default:
		}
		if mem == nil {
			return cand, nil
		}
	}
	if host != m.id { // one placed here is found among the instances once active
		m.mu.Lock()
		m.placements[ownKey(typ, id)] = host
		m.mu.Unlock()
	}
	return mem, nil
}

// forget drops this sidecar's cached placement of an instance.
func (m *Mesh) forgetPlacement(typ, id string) {
	m.mu.Lock()
	delete(m.placements, actorKey(typ, id))
	m.mu.Unlock()
}

// asError is errors.As for a type of error, nil when err is not one. Only
// a non-nil err costs an allocation (the target errors.As writes to),
// where a target declared beside each call cost one per call.
func asError[E error](err error) (none E) {
	if err == nil {
		return none
	}
	var e E // on the heap: declared only on this branch
	errors.As(err, &e)
	return e
}

// serveActor runs an actor request on this host.
func (m *Mesh) serveActor(env *Envelope, finish func()) {
	defer m.endServe()
	ctx := context.Background()
	in := m.instance(env.ActorType, env.ActorID)
	defer m.unref(in)
	var resp *Envelope
	var err error
	for step := 0; ; step++ {
		resp, err = m.runActorStep(ctx, in, env)
		// Redis unreachable while activating: wait for it, as every other
		// use of Redis does. Handing the request over instead left it
		// unfinished on this sidecar's partition, which nobody else reads
		// while this sidecar keeps it: the call hung after the outage.
		for attempt := 0; ; attempt++ {
			noPlace := asError[*placementError](err)
			if noPlace == nil || !m.pause(backoff(attempt)) {
				break
			}
			if attempt == 0 {
				m.log.Warn("cannot place an actor instance; retrying", "actor", env.ActorType+"/"+env.ActorID, "err", noPlace.err)
			}
			resp, err = m.runActorStep(ctx, in, env)
		}
		if err != nil {
			if elsewhere := asError[*notHereError](err); elsewhere != nil {
				m.passOn(ctx, env, elsewhere.host, finish)
				return
			}
			m.handOver(env, finish, err)
			return
		}
		next := continuation(env, resp, step)
		if next == nil {
			break
		}
		if err := m.recordStep(env.ID, next); err != nil {
			// Without the record the chain could run a step twice after a
			// crash; fail the call instead.
			resp = &Envelope{Status: 500, Error: true, Body: []byte("cannot record tail call: " + err.Error())}
			break
		}
		if next.ActorType == env.ActorType && next.ActorID == env.ActorID && !next.releaseLock {
			// The continuation keeps this instance: run it here, still holding it.
			next.holdsLock = true
			env = next
			continue
		}
		m.sendContinuation(next)
		finish()
		return
	}
	m.answer(env, resp, finish)
}

// notHereError: an instance not active here is not to be activated here,
// because its placement names another live host (host; nil when this
// sidecar's view does not know it yet) or this sidecar is draining.
type notHereError struct{ host *Member }

func (e *notHereError) Error() string { return "actor instance hosted elsewhere" }

// hostHere makes this sidecar the host of an instance about to be
// activated here, or reports where it belongs instead.
func (m *Mesh) hostHere(ctx context.Context, typ, id string) error {
	if m.isWithdrawn() || m.isLeaving() {
		return &notHereError{}
	}
	// This sidecar becomes the host unless another live host has it.
	host, err := m.placeOn(ctx, typ, id, m.id)
	if err != nil {
		return &placementError{err}
	}
	if host != m.id {
		return &notHereError{host: m.view.Load().byID[host]}
	}
	return nil
}

// placementError is a failure to read or write an instance's placement
// (Redis unreachable) before activating it here.
type placementError struct{ err error }

func (e *placementError) Error() string { return "actor placement: " + e.err.Error() }
func (e *placementError) Unwrap() error { return e.err }

// passOn sends an actor request to the instance's host (to, or the one its
// placement names), or holds it while the type has no live host.
func (m *Mesh) passOn(ctx context.Context, env *Envelope, to *Member, finish func()) {
	if to == nil {
		to = m.routeTo(ctx, env, m.id)
	}
	if to == nil {
		m.hold(env, finish)
		return
	}
	m.forward(env, to, finish)
}

func (in *instance) isActive() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.active
}

// runActorStep acquires the instance, activates it if needed and invokes
// the method (or deactivates the instance, for a DELETE).
func (m *Mesh) runActorStep(ctx context.Context, in *instance, env *Envelope) (*Envelope, error) {
	if !env.holdsLock && !in.tryAcquire(env.Session) {
		// Busy: wait, bounded by -actor_busy_timeout. (A free instance,
		// the usual case, is taken above without a timer: one per call
		// was a timer set and stopped on every actor call.)
		actx := ctx
		if m.opts.ActorBusyTimeout > 0 {
			var cancel context.CancelFunc
			actx, cancel = context.WithTimeout(ctx, m.opts.ActorBusyTimeout)
			defer cancel()
		}
		waited, err := in.acquireWait(actx, env.Session)
		if waited {
			m.opts.Metrics.BusyWait(env.ActorType)
		}
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				// KAR answers 500: a retry a second later (what kar-sdk
				// does on 503) would only wait again.
				return &Envelope{Status: http.StatusInternalServerError, Error: true,
					Body: []byte(fmt.Sprintf("actor %s/%s stayed busy longer than -actor_busy_timeout %s", env.ActorType, env.ActorID, m.opts.ActorBusyTimeout))}, nil
			}
			return nil, err
		}
	}
	if !env.holdsLock {
		defer in.release()
	}
	base, method, refused := implPaths(env)
	if refused != nil {
		return refused, nil
	}
	query := "session=" + url.QueryEscape(env.Session)
	if env.Method == http.MethodDelete {
		return m.deactivate(ctx, in, base)
	}
	if !in.isActive() {
		// First request here since the instance was (de)activated: its
		// placement must name this sidecar before the component activates
		// it. Checked while holding the instance, so that a deactivation
		// (the collector's, a drain's) cannot slip between the check and
		// the activation and leave the instance active on two hosts.
		if err := m.hostHere(ctx, env.ActorType, env.ActorID); err != nil {
			return nil, err
		}
		resp, err := m.deliver(ctx, &Envelope{Method: http.MethodGet, Path: base, Query: query})
		if err != nil {
			return nil, err
		}
		if resp.Status != http.StatusOK && resp.Status != http.StatusCreated {
			return &Envelope{Status: resp.Status, Header: resp.Header, Body: resp.Body, Error: true}, nil
		}
		in.mu.Lock()
		in.active = true
		in.mu.Unlock()
		m.opts.Metrics.Activated(env.ActorType)
	}
	m.enter(env.Session, env.ID)
	defer m.leave(env.Session, env.ID)
	call := *env
	call.Path = method
	call.Query = query
	call.Method = http.MethodPost
	if len(call.Header) == 0 {
		// Callers leave out the one header every method call has.
		call.Header = m.methodHeader
	}
	return m.deliver(ctx, &call)
}

func (m *Mesh) deactivate(ctx context.Context, in *instance, base string) (*Envelope, error) {
	if in.isActive() {
		if _, err := m.opts.Handler(ctx, &Envelope{Method: http.MethodDelete, Path: base}); err != nil {
			m.log.Warn("deactivating actor", "actor", in.typ+"/"+in.id, "err", err)
		}
		m.opts.Metrics.Deactivated(in.typ)
	}
	m.dropInstance(ctx, in)
	return &Envelope{Status: http.StatusOK, Body: []byte("OK")}, nil
}

// dropInstance deactivates an instance here and gives up its placement;
// the instance leaves the map when no request holds it (forgetUnused).
func (m *Mesh) dropInstance(ctx context.Context, in *instance) {
	in.mu.Lock()
	in.active = false
	in.mu.Unlock()
	m.mu.Lock()
	delete(m.placements, actorKey(in.typ, in.id))
	m.mu.Unlock()
	unplaceScript.Run(ctx, m.rdb, []string{m.keys.Placement(in.typ, in.id)}, m.id)
}

// answer sends the final response of a request (unless async) and marks it finished.
func (m *Mesh) answer(env *Envelope, resp *Envelope, finish func()) {
	kind := metrics.Sync
	switch {
	case isStep(env.ID):
		kind = metrics.TailCall
	case env.Async:
		kind = metrics.Async
	}
	m.opts.Metrics.Served(kind, env.ActorType != "", env.TargetName(), resp.Status)
	if isStep(env.ID) {
		// Steps of a chain record their result, so a duplicate of the
		// step replays it instead of running the method again.
		r := *resp
		r.Kind = KindResponse
		if b, err := m.encode(&r); err == nil {
			m.rdb.Set(context.Background(), m.keys.Response(env.ID), b, stepRecordTTL)
		}
	}
	if !env.Async {
		resp.Kind = KindResponse
		resp.ID = rootID(env.ID)
		resp.To = env.From
		p := m.partitionOf(env.From, env.FromPart)
		if env.Parent == "" {
			// Nothing to note in Redis once the answer is durable
			// (callDone): the record is finished when the broker
			// acknowledges it, and this goroutine does not wait.
			m.answerAsync(resp, p, finish)
			return
		}
		if !m.produceRetry(resp, p) {
			return
		}
	}
	m.callDone(env)
	finish()
}

// answerAsync writes resp to partition p and finishes its request once the
// broker has it, retrying while Kafka is unreachable, as produceRetry
// does. Until then it counts as work (Drain waits for it).
func (m *Mesh) answerAsync(resp *Envelope, p int32, finish func()) {
	val, buf, err := m.encodePooled(resp)
	if err != nil {
		m.log.Error("cannot encode message", "err", err)
		finish()
		return
	}
	m.work.Add(1)
	m.produceAsync(p, val, func(err error) {
		release(buf, val)
		if err == nil {
			finish()
			m.work.Done()
			return
		}
		go func() {
			defer m.work.Done()
			if m.produceRetry(resp, p) {
				finish()
			}
		}()
	})
}

func (m *Mesh) selfPartition() int32 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.self.Partition
}

// runOnce runs a request that may be a duplicate (a chain step, or a
// record a previous owner of the partition may have worked on): a
// duplicate of a step running here waits for it and then, like any
// duplicate of a finished step, replays the step's record instead of
// running the method again.
func (m *Mesh) runOnce(env *Envelope, finish func(), run func()) {
	m.mu.Lock()
	wait, busy := m.running[env.ID]
	if !busy {
		done := make(chan struct{})
		m.running[env.ID] = done
		m.mu.Unlock()
		defer func() {
			m.mu.Lock()
			delete(m.running, env.ID)
			m.mu.Unlock()
			close(done)
		}()
		if m.replayStep(env, finish) {
			m.endServe()
			return
		}
		if m.redeliveredTooOften(env, finish) {
			m.endServe()
			return
		}
		m.awaitEarlierCalls(env)
		run()
		return
	}
	m.mu.Unlock()
	select {
	case <-wait:
	case <-m.stopping:
		m.endServe()
		return
	}
	if !m.replayStep(env, finish) {
		m.log.Warn("duplicate of a step that left no record", "id", env.ID)
		finish()
	}
	m.endServe()
}

// replayStep handles a duplicate of a chain step: it resends what the
// step produced the first time. It reports false when the step never ran.
func (m *Mesh) replayStep(env *Envelope, finish func()) bool {
	b, err := m.rdb.Get(context.Background(), m.keys.Response(env.ID)).Bytes()
	if err != nil {
		return false
	}
	rec, err := Decode(b)
	if err != nil {
		return false
	}
	if rec.Kind == KindRequest {
		m.sendContinuation(rec)
		finish()
		return true
	}
	if !env.Async {
		rec.ID = rootID(env.ID)
		rec.To = env.From
		m.produceRetry(rec, m.partitionOf(env.From, env.FromPart))
	}
	finish()
	return true
}

// collectLoop deactivates instances idle for longer than the collector interval.
func (m *Mesh) collectLoop(ctx context.Context) {
	idle := m.opts.ActorCollectorInterval
	if idle <= 0 {
		return
	}
	every(ctx, min(idle, time.Minute), nil, func(ctx context.Context) {
		m.deactivateIdle(ctx, time.Now().Add(-idle))
	})
}

// deactivateIdle deactivates the instances last used before cutoff (all
// of them when cutoff is in the future).
func (m *Mesh) deactivateIdle(ctx context.Context, cutoff time.Time) {
	m.mu.Lock()
	var idle []*instance
	for _, in := range m.instances {
		in.mu.Lock()
		if in.session == "" && len(in.waiters) == 0 && in.used.Before(cutoff) {
			idle = append(idle, in)
		}
		in.mu.Unlock()
	}
	m.mu.Unlock()
	for _, in := range idle {
		m.retire(ctx, in, "kar-collector")
	}
}

// retire deactivates an instance hosted here once its turn comes (the
// requests queued for it before run first) and gives up its placement.
func (m *Mesh) retire(ctx context.Context, in *instance, session string) {
	if err := in.acquire(ctx, session); err != nil {
		return
	}
	// An instance here was activated through this path: it is valid.
	base, _ := ImplInstancePath(in.typ, in.id)
	m.deactivate(ctx, in, base)
	in.release()
	m.mu.Lock()
	m.forgetUnused(in)
	m.mu.Unlock()
}

// Placed tells whether an actor instance has a placement.
func (m *Mesh) Placed(ctx context.Context, typ, id string) (bool, error) {
	n, err := m.rdb.Exists(ctx, m.keys.Placement(typ, id)).Result()
	return n > 0, err
}
