package mesh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/metrics"
	"github.com/redis/go-redis/v9"
)

// Handler serves a request addressed to this sidecar's component. It
// returns the response, or an error when the component could not be reached
// at all; the mesh then retries, or leaves the request to another sidecar
// when this one is leaving.
type Handler func(ctx context.Context, req *Envelope) (*Envelope, error)

// Options configure a Mesh.
type Options struct {
	App     string
	Host    string
	Port    int
	Version string
	// Client marks a one-shot sidecar: it never adopts other partitions.
	Client bool
	// LeaseTTL bounds how long a dead sidecar's partition stays unowned.
	LeaseTTL time.Duration
	// MissingComponentTimeout bounds how long a request waits for a
	// component of its target to join (0: for ever, as in KAR).
	MissingComponentTimeout time.Duration
	// ActorBusyTimeout bounds how long an actor call waits for its
	// instance (0: forever); ActorCollectorInterval deactivates instances
	// idle that long (0: never).
	ActorBusyTimeout       time.Duration
	ActorCollectorInterval time.Duration
	// DeliveryAttempts bounds how often a request is delivered to a
	// component that takes it and fails without an answer (default 6).
	DeliveryAttempts int
	// Partitions is the topic's initial partition count.
	Partitions int32
	Handler    Handler
	Logger     *slog.Logger
	// Metrics records what the mesh does (nil: nothing).
	Metrics *metrics.Metrics
	// Notices is the sidecar's pub/sub connection, shared with its other
	// mechanisms (nil: the mesh opens one of its own).
	Notices *store.Notices
}

// Mesh is one sidecar's membership in an application's mesh.
type Mesh struct {
	opts  Options
	id    string
	log   *slog.Logger
	rdb   redis.UniversalClient
	kc    *kafka.Client
	topic string
	keys  store.Keys

	view atomic.Pointer[view]
	rr   atomic.Uint64
	seq  atomic.Uint64

	mu   sync.Mutex
	self Member
	// recordMu orders the writes of this sidecar's record (writeRecord).
	recordMu sync.Mutex
	owned    map[int32]*owned
	// buried: members found dead by adopting their partition (adopt.go),
	// by id, with that partition; left out of the view.
	buried  map[string]int32
	pending map[string]call
	// promised: when each promise (Pragma: promise) was issued, so that
	// promises nobody awaits do not pile up.
	promised map[string]time.Time
	held     []*heldReq
	// strays: responses for callers that moved, waiting to be passed on.
	strays []*stray
	// instances hosted here; placements caches where instances live.
	instances  map[actorRef]*instance
	placements map[actorRef]string
	// running: the chain steps (and possible redeliveries) being run here.
	running map[string]chan struct{}
	// sessions: per session, the requests this sidecar's component runs,
	// innermost last (orchestrate.go).
	sessions map[string][]string
	// serviceRuns: the service requests the component runs, by id (a
	// service request has no session: its id stands for one), and how
	// many runs of each (a redelivery may overlap).
	serviceRuns map[string]int
	// methodHeader is the header of an actor method call whose caller
	// sent none: one map for all of them, never changed (the component
	// client copies what it sends).
	methodHeader httpx.Fields
	leaving      bool
	// withdrawn: no longer announced (drain.go); requests still arriving
	// go elsewhere, except those for the actor instances still active here.
	withdrawn bool
	// serving counts the requests taken for this sidecar's component and
	// not yet finished with (beginServe, endServe): Drain waits for none.
	serving atomic.Int64

	stopping chan struct{} // closed when Leave starts
	workers  *pool
	// poisoned counts requests given up after DeliveryAttempts failures.
	poisoned atomic.Int64
	health   *health
	refreshC chan struct{}
	noticeC  chan notice // membership changes to apply (members.go)
	adoptC   chan struct{}
	// commitC wakes the commit loop when a record is finished.
	commitC chan struct{}
	// heldC wakes the held loop when a request is held.
	heldC chan struct{}
	// topicC wakes the topic keeper (topic.go).
	topicC chan struct{}
	loops  sync.WaitGroup
	work   workCount
	cancel context.CancelFunc
	// memberNotices are the membership channel's notices (watchLoop);
	// unwatch ends them, and closes the mesh's own Notices if it has one.
	memberNotices <-chan any
	unwatch       func()
}

// New prepares a mesh member; Join makes it live.
func New(opts Options, rdb redis.UniversalClient, kc *kafka.Client) (*Mesh, error) {
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 3 * time.Second
	}
	if opts.DeliveryAttempts <= 0 {
		opts.DeliveryAttempts = 6
	}
	if opts.Partitions <= 0 {
		opts.Partitions = 16
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	var b [6]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	m := &Mesh{
		opts:         opts,
		id:           id,
		log:          opts.Logger.With("sidecar", id),
		rdb:          rdb,
		kc:           kc,
		topic:        kafka.Topic(opts.App),
		keys:         store.NewKeys(opts.App),
		owned:        map[int32]*owned{},
		buried:       map[string]int32{},
		pending:      map[string]call{},
		promised:     map[string]time.Time{},
		instances:    map[actorRef]*instance{},
		placements:   map[actorRef]string{},
		running:      map[string]chan struct{}{},
		sessions:     map[string][]string{},
		serviceRuns:  map[string]int{},
		methodHeader: httpx.Fields{"Content-Type", "application/kar+json"},
		stopping:     make(chan struct{}),
		refreshC:     make(chan struct{}, 1),
		noticeC:      make(chan notice, 256),
		adoptC:       make(chan struct{}, 1),
		commitC:      make(chan struct{}, 1),
		heldC:        make(chan struct{}, 1),
		topicC:       make(chan struct{}, 1),
	}
	m.workers = newPool(10 * time.Second)
	m.health = newHealth(opts.LeaseTTL)
	m.view.Store(newView(nil))
	m.self = Member{ID: id, Host: opts.Host, Port: opts.Port, Version: opts.Version, Started: time.Now().UTC(), Client: opts.Client}
	return m, nil
}

// ID is this sidecar's id in the mesh.
func (m *Mesh) ID() string { return m.id }

// Poisoned is how many requests this sidecar gave up after their
// component failed them -delivery_attempts times.
func (m *Mesh) Poisoned() int64 { return m.poisoned.Load() }

// Join claims a partition, starts reading it and registers this sidecar
// (with no services yet: see Announce).
func (m *Mesh) Join(ctx context.Context) (err error) {
	n, err := m.kc.EnsureTopic(ctx, m.topic, m.opts.Partitions)
	if err != nil {
		return err
	}
	// The writer's connections open while the join goes on (its Redis
	// round trips), not when the first record is produced.
	go m.kc.Warm(m.topic)
	if err := m.watchMembers(ctx); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.unwatch()
			m.unwatch = nil
		}
	}()
	p, err := m.claim(ctx, n)
	if err != nil {
		return err
	}
	if err := m.startPartition(ctx, p, false); err != nil {
		m.rdb.Del(ctx, m.keys.Lease(p))
		return err
	}
	m.mu.Lock()
	m.self.Partition = p
	m.mu.Unlock()
	if err := m.register(ctx, "join"); err != nil {
		return err
	}
	if err := m.refresh(ctx); err != nil {
		return fmt.Errorf("read membership: %w", err)
	}
	lctx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.loop(lctx, m.renewLoop)
	m.loop(lctx, m.watchLoop)
	m.loop(lctx, m.refreshLoop)
	m.loop(lctx, m.commitLoop)
	m.loop(lctx, m.heldLoop)
	m.loop(lctx, m.topicLoop)
	if !m.opts.Client {
		m.loop(lctx, m.adoptLoop)
		m.loop(lctx, m.collectLoop)
	}
	m.log.Info("joined", "app", m.opts.App, "partition", p)
	return nil
}

// every runs f every period, and at once on each signal of wake (nil:
// none), until ctx ends.
func every(ctx context.Context, period time.Duration, wake <-chan struct{}, f func(context.Context)) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-wake:
		}
		f(ctx)
	}
}

func (m *Mesh) loop(ctx context.Context, f func(context.Context)) {
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		f(ctx)
	}()
}

// Announce publishes the services and actor types this sidecar serves.
func (m *Mesh) Announce(ctx context.Context, services, actors []string) error {
	m.mu.Lock()
	if m.withdrawn || m.leaving {
		m.mu.Unlock()
		return nil
	}
	m.self.Services = services
	m.self.Actors = actors
	m.mu.Unlock()
	return m.register(ctx, "update")
}

// register writes this sidecar's record and tells the others.
func (m *Mesh) register(ctx context.Context, what string) error {
	if err := m.writeRecord(ctx, what); err != nil {
		return fmt.Errorf("register sidecar: %w", err)
	}
	return nil
}

// writeRecord writes this sidecar's record as it is now, with a lease's
// time to live, and puts the sidecar in the set of members; with what
// ("join", "update"), it also tells the others (see notice).
//
// The writes follow one another (recordMu), each taking the record when
// its turn comes: a lease renewal that took the record before an
// announcement and wrote it after (renew waits for Redis between the two)
// put the sidecar's former services and actor types back. The members
// had heard the announcement, but a sidecar joining later read the stale
// record and routed nothing of the new types here until its next whole
// read of the members (membershipPoll).
func (m *Mesh) writeRecord(ctx context.Context, what string) error {
	m.recordMu.Lock()
	defer m.recordMu.Unlock()
	m.mu.Lock()
	rec, _ := json.Marshal(m.self)
	m.mu.Unlock()
	pipe := m.rdb.TxPipeline()
	pipe.Set(ctx, m.keys.Sidecar(m.id), rec, m.opts.LeaseTTL)
	pipe.SAdd(ctx, m.keys.Sidecars(), m.id)
	if what != "" {
		pipe.Publish(ctx, m.keys.Members(), what+" "+m.id+" "+string(rec))
	}
	_, err := pipe.Exec(ctx)
	return err
}

func (m *Mesh) isWithdrawn() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.withdrawn
}

func (m *Mesh) isLeaving() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaving
}

// Leave drains and leaves the mesh: no new work is routed here, work in
// flight finishes (or is left to the adopter of this sidecar's
// partitions), positions are committed and leases released.
func (m *Mesh) Leave(ctx context.Context) {
	m.mu.Lock()
	if m.leaving {
		m.mu.Unlock()
		return
	}
	m.leaving = true
	m.self.Services, m.self.Actors = nil, nil
	m.mu.Unlock()
	if err := m.register(ctx, "update"); err != nil {
		m.log.Warn("cannot announce leave", "err", err)
	}
	close(m.stopping)
	m.work.Wait(ctx)
	// Instances hosted here move: their placements go, and a component
	// still alive gets their deactivation.
	m.deactivateIdle(ctx, time.Now().Add(time.Hour))
	m.mu.Lock()
	var os []*owned
	for p, o := range m.owned {
		os = append(os, o)
		delete(m.owned, p)
	}
	pending := len(m.pending)
	m.mu.Unlock()
	if pending > 0 {
		m.log.Info("leaving with calls unanswered", "count", pending)
	}
	for _, o := range os {
		m.release(ctx, o)
	}
	if m.cancel != nil {
		m.cancel()
	}
	m.loops.Wait()
	pipe := m.rdb.TxPipeline()
	pipe.Del(ctx, m.keys.Sidecar(m.id))
	pipe.SRem(ctx, m.keys.Sidecars(), m.id)
	pipe.Publish(ctx, m.keys.Members(), "leave "+m.id)
	if _, err := pipe.Exec(ctx); err != nil {
		m.log.Warn("cannot deregister", "err", err)
	}
	if m.unwatch != nil {
		m.unwatch()
	}
	m.log.Info("left", "app", m.opts.App)
}
