package mesh

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
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
	// component of its target to join.
	MissingComponentTimeout time.Duration
	// ActorBusyTimeout bounds how long an actor call waits for its
	// instance (0: forever); ActorCollectorInterval deactivates instances
	// idle that long (0: never).
	ActorBusyTimeout       time.Duration
	ActorCollectorInterval time.Duration
	// Partitions is the topic's initial partition count.
	Partitions int32
	Handler    Handler
	Logger     *slog.Logger
}

// ErrUnknownRequest is returned by Await for an id it never issued or already answered.
var ErrUnknownRequest = errors.New("unknown request id")

// Mesh is one sidecar's membership in an application's mesh.
type Mesh struct {
	opts  Options
	id    string
	log   *slog.Logger
	rdb   *redis.Client
	kc    *kafka.Client
	topic string
	keys  store.Keys

	view atomic.Pointer[view]
	rr   atomic.Uint64
	seq  atomic.Uint64

	mu      sync.Mutex
	self    Member
	owned   map[int32]*owned
	pending map[string]chan *Envelope
	// promised: when each promise (Pragma: promise) was issued, so that
	// promises nobody awaits do not pile up.
	promised map[string]time.Time
	held     []*heldReq
	// instances hosted here; placements caches where instances live.
	instances  map[string]*instance
	placements map[string]string
	// running: the chain steps (and possible redeliveries) being run here.
	running map[string]chan struct{}
	leaving bool
	// withdrawn: no longer announced; requests still arriving are served
	// while the component answers, and handed over when it does not.
	withdrawn bool

	stopping chan struct{} // closed when Leave starts
	workers  *pool
	refreshC chan struct{}
	adoptC   chan struct{}
	// commitC wakes the commit loop when a record is finished.
	commitC chan struct{}
	loops   sync.WaitGroup
	work    sync.WaitGroup
	cancel  context.CancelFunc
	sub     *redis.PubSub
}

type owned struct {
	p         int32
	r         *kafka.PartitionReader
	tr        *tracker
	adopted   bool
	committed int64
	// below: records under this offset may have been worked on by a
	// previous owner (redeliveries): chain steps among them are replayed.
	below    int64
	lastWork atomic.Int64 // Unix ms of the last record read
	done     chan struct{}
}

type heldReq struct {
	env    *Envelope
	finish func()
	until  time.Time
}

// New prepares a mesh member; Join makes it live.
func New(opts Options, rdb *redis.Client, kc *kafka.Client) (*Mesh, error) {
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = 3 * time.Second
	}
	if opts.MissingComponentTimeout <= 0 {
		opts.MissingComponentTimeout = 2 * time.Minute
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
		opts:       opts,
		id:         id,
		log:        opts.Logger.With("sidecar", id),
		rdb:        rdb,
		kc:         kc,
		topic:      kafka.Topic(opts.App),
		keys:       store.NewKeys(opts.App),
		owned:      map[int32]*owned{},
		pending:    map[string]chan *Envelope{},
		promised:   map[string]time.Time{},
		instances:  map[string]*instance{},
		placements: map[string]string{},
		running:    map[string]chan struct{}{},
		stopping:   make(chan struct{}),
		refreshC:   make(chan struct{}, 1),
		adoptC:     make(chan struct{}, 1),
		commitC:    make(chan struct{}, 1),
	}
	m.workers = newPool(10 * time.Second)
	m.view.Store(newView(nil))
	m.self = Member{ID: id, Host: opts.Host, Port: opts.Port, Version: opts.Version, Started: time.Now().UTC(), Client: opts.Client}
	return m, nil
}

// ID is this sidecar's id in the mesh.
func (m *Mesh) ID() string { return m.id }

// Join claims a partition, starts reading it and registers this sidecar
// (with no services yet: see Announce).
func (m *Mesh) Join(ctx context.Context) error {
	n, err := m.kc.EnsureTopic(ctx, m.topic, m.opts.Partitions)
	if err != nil {
		return err
	}
	m.sub = m.rdb.Subscribe(ctx, m.keys.Members())
	if _, err := m.sub.Receive(ctx); err != nil {
		return fmt.Errorf("subscribe to membership: %w", err)
	}
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

// claimScript claims the first free partition lease from a random start.
// ARGV: lease prefix, partition count, start, id, ttl ms.
var claimScript = redis.NewScript(`
local n = tonumber(ARGV[2])
local start = tonumber(ARGV[3])
for i = 0, n - 1 do
  local p = (start + i) % n
  if redis.call('SET', ARGV[1] .. p, ARGV[4], 'NX', 'PX', ARGV[5]) then return p end
end
return -1`)

func (m *Mesh) claim(ctx context.Context, n int32) (int32, error) {
	for attempt := 0; attempt < 10; attempt++ {
		p, err := claimScript.Run(ctx, m.rdb, nil, m.keys.LeasePrefix(), n, mrand.IntN(int(n)), m.id, m.opts.LeaseTTL.Milliseconds()).Int()
		if err != nil {
			return 0, fmt.Errorf("claim a partition: %w", err)
		}
		if p >= 0 {
			return int32(p), nil
		}
		if n, err = m.kc.GrowTopic(ctx, m.topic, n+16); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("no free partition after growing the topic 10 times")
}

// register writes this sidecar's record and tells the others.
func (m *Mesh) register(ctx context.Context, what string) error {
	m.mu.Lock()
	rec, _ := json.Marshal(m.self)
	m.mu.Unlock()
	pipe := m.rdb.TxPipeline()
	pipe.Set(ctx, m.keys.Sidecar(m.id), rec, m.opts.LeaseTTL)
	pipe.SAdd(ctx, m.keys.Sidecars(), m.id)
	pipe.Publish(ctx, m.keys.Members(), what+" "+m.id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("register sidecar: %w", err)
	}
	return nil
}

// startPartition reads partition p from its committed position.
func (m *Mesh) startPartition(ctx context.Context, p int32, adopted bool) error {
	start := sarama.OffsetOldest
	if s, err := m.rdb.Get(ctx, m.keys.Offset(p)).Result(); err == nil {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil {
			start = v
		}
	} else if !errors.Is(err, redis.Nil) {
		return fmt.Errorf("read position of partition %d: %w", p, err)
	}
	if start == sarama.OffsetOldest {
		oldest, err := m.kc.GetOffset(m.topic, p, sarama.OffsetOldest)
		if err != nil {
			return fmt.Errorf("read partition %d: %w", p, err)
		}
		start = oldest
	}
	o := &owned{p: p, tr: newTracker(start), adopted: adopted, committed: start}
	if hwm, err := m.kc.GetOffset(m.topic, p, sarama.OffsetNewest); err == nil && hwm > start {
		o.below = hwm
	}
	o.lastWork.Store(time.Now().UnixMilli())
	m.mu.Lock()
	m.owned[p] = o
	m.mu.Unlock()
	o.r = m.kc.ReadPartition(m.topic, p, start, func(off int64, value []byte) {
		o.tr.add(off)
		o.lastWork.Store(time.Now().UnixMilli())
		m.dispatch(o, off, value)
	})
	return nil
}

func (m *Mesh) dispatch(o *owned, off int64, value []byte) {
	finish := func() {
		o.tr.finish(off)
		select {
		case m.commitC <- struct{}{}:
		default:
		}
	}
	env, err := Decode(value)
	if err != nil {
		m.log.Warn("dropping a record that is not a kar message", "partition", o.p, "offset", off, "err", err)
		finish()
		return
	}
	if env.Kind == KindResponse {
		m.onResponse(env, o.p)
		finish()
		return
	}
	if m.serves(env) {
		m.work.Add(1)
		run := func() { m.serve(env, finish) }
		if env.ActorType != "" {
			run = func() { m.serveActor(env, finish) }
		}
		if isStep(env.ID) || off < o.below || env.MayRepeat {
			m.workers.Go(func() { m.runOnce(env, finish, run) })
		} else {
			m.workers.Go(run)
		}
		return
	}
	m.route(env, finish)
}

// serves tells whether this sidecar's component takes env.
func (m *Mesh) serves(env *Envelope) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.leaving {
		return false
	}
	if env.ActorType != "" {
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

func (m *Mesh) serve(env *Envelope, finish func()) {
	defer m.work.Done()
	var resp *Envelope
	for attempt := 0; ; attempt++ {
		// No per-request cancellation: registering every delivery with a
		// cancellable parent was a tenth of a busy sidecar's CPU; Leave
		// bounds its wait for deliveries itself.
		r, err := m.opts.Handler(context.Background(), env)
		if err == nil {
			resp = r
			break
		}
		if m.isLeaving() || m.isWithdrawn() {
			m.handOver(env, finish, err)
			return
		}
		if attempt%20 == 0 {
			m.log.Warn("component unreachable, retrying", "id", env.ID, "err", err)
		}
		if !m.pause(backoff(attempt)) {
			m.handOver(env, finish, err)
			return
		}
	}
	if next := continuation(env, resp, 0); next != nil {
		if err := m.recordStep(env.ID, next); err == nil {
			m.sendContinuation(next)
			finish()
			return
		}
		resp = &Envelope{Status: 500, Error: true, Body: []byte("cannot record tail call")}
	}
	m.answer(env, resp, finish)
}

// handOver passes a request this sidecar's component can no longer serve
// (it is stopping or gone) to another live sidecar that serves it. With
// none, the request stays unfinished: the partition's next owner
// delivers it.
func (m *Mesh) handOver(env *Envelope, finish func(), cause error) {
	if env.ActorType != "" {
		m.dropInstance(context.Background(), m.instance(env.ActorType, env.ActorID))
	}
	if t := m.routeTo(context.Background(), env, m.id); t != nil {
		m.log.Info("handing a request over to another sidecar", "id", env.ID, "to", t.ID, "err", cause)
		m.forward(env, t, finish)
		return
	}
	m.log.Info("leaving a request to the partition's next owner", "id", env.ID, "err", cause)
}

// Withdraw stops new work from being routed here (the services and actor
// types are no longer announced) while the sidecar keeps running: the
// first step of a graceful stop, taken before the component is signalled.
func (m *Mesh) Withdraw(ctx context.Context) error {
	m.mu.Lock()
	m.withdrawn = true
	m.self.Services, m.self.Actors = nil, nil
	m.mu.Unlock()
	return m.register(ctx, "update")
}

func (m *Mesh) isWithdrawn() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.withdrawn
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

func (m *Mesh) isLeaving() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.leaving
}

// partitionOf is where sidecar id reads now, or fallback if unknown.
func (m *Mesh) partitionOf(id string, fallback int32) int32 {
	if mem := m.view.Load().byID[id]; mem != nil {
		return mem.Partition
	}
	return fallback
}

// produceRetry writes env to partition p, retrying while Kafka is
// unreachable; it gives up only when the sidecar leaves.
func (m *Mesh) produceRetry(env *Envelope, p int32) bool {
	val, err := env.Encode()
	if err != nil {
		m.log.Error("cannot encode message", "err", err)
		return true
	}
	for attempt := 0; ; attempt++ {
		err := m.produce(context.Background(), p, val)
		if err == nil {
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
	err := m.kc.Produce(ctx, m.topic, p, val)
	if errors.Is(err, sarama.ErrInvalidPartition) {
		// The topic grew since the metadata was read.
		if rerr := m.kc.RefreshMetadata(m.topic); rerr == nil {
			err = m.kc.Produce(ctx, m.topic, p, val)
		}
	}
	return err
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

// hold keeps a request until a component of its target joins.
func (m *Mesh) hold(env *Envelope, finish func()) {
	until := time.UnixMilli(env.Deadline)
	if env.Deadline == 0 {
		until = time.Now().Add(m.opts.MissingComponentTimeout)
	}
	m.mu.Lock()
	m.held = append(m.held, &heldReq{env: env, finish: finish, until: until})
	m.mu.Unlock()
	m.log.Info("holding a request until a component joins", "id", env.ID, "target", env.Target())
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

// retryHeld forwards held requests whose target has now joined.
func (m *Mesh) retryHeld(ctx context.Context) {
	m.mu.Lock()
	held := m.held
	m.held = nil
	m.mu.Unlock()
	var keep []*heldReq
	for _, h := range held {
		if m.serves(h.env) {
			m.work.Add(1)
			if h.env.ActorType != "" {
				go m.serveActor(h.env, h.finish)
			} else {
				go m.serve(h.env, h.finish)
			}
		} else if t := m.routeTo(ctx, h.env, m.id); t != nil {
			m.forward(h.env, t, h.finish)
		} else {
			keep = append(keep, h)
		}
	}
	if len(keep) > 0 {
		m.mu.Lock()
		m.held = append(m.held, keep...)
		m.mu.Unlock()
	}
}

// heldLoop answers held requests whose wait for a component ran out.
func (m *Mesh) heldLoop(ctx context.Context) {
	every(ctx, 100*time.Millisecond, nil, m.expireHeld)
}

func (m *Mesh) expireHeld(ctx context.Context) {
	now := time.Now()
	var expired []*heldReq
	m.mu.Lock()
	keep := m.held[:0]
	for _, h := range m.held {
		if now.After(h.until) {
			expired = append(expired, h)
		} else {
			keep = append(keep, h)
		}
	}
	m.held = keep
	m.mu.Unlock()
	for _, h := range expired {
		msg := fmt.Sprintf("no component for %s joined the application %s in time (-missing_component_timeout %s)", h.env.Target(), m.opts.App, m.opts.MissingComponentTimeout)
		m.log.Error(msg, "id", h.env.ID)
		if !h.env.Async {
			resp := &Envelope{Kind: KindResponse, ID: h.env.ID, To: h.env.From, Status: 503, Error: true, Body: []byte(msg)}
			if !m.produceRetry(resp, m.partitionOf(h.env.From, h.env.FromPart)) {
				continue
			}
		}
		h.finish()
	}
}

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
	val, err := req.Encode()
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

// renewLoop keeps this sidecar's leases; a lease lost (this sidecar was
// presumed dead) gives up that partition and, if it was the primary one,
// claims another.
func (m *Mesh) renewLoop(ctx context.Context) {
	every(ctx, m.opts.LeaseTTL/4, nil, m.renew)
}

func (m *Mesh) renew(ctx context.Context) {
	m.mu.Lock()
	rec, _ := json.Marshal(m.self)
	primary := m.self.Partition
	parts := make([]int32, 0, len(m.owned))
	for p := range m.owned {
		parts = append(parts, p)
	}
	m.mu.Unlock()
	pipe := m.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(parts))
	for i, p := range parts {
		r := ""
		if p == primary {
			r = string(rec)
		}
		cmds[i] = renewScript.Eval(ctx, pipe, []string{m.keys.Lease(p), m.keys.Sidecar(m.id)}, m.id, m.opts.LeaseTTL.Milliseconds(), r)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		// Not a verdict on the leases: try again at the next tick.
		if ctx.Err() == nil {
			m.log.Warn("cannot renew leases", "err", err)
		}
		return
	}
	for i, c := range cmds {
		if n, _ := c.Int(); n == 0 {
			m.lost(ctx, parts[i], parts[i] == primary)
		}
	}
}

func (m *Mesh) lost(ctx context.Context, p int32, primary bool) {
	m.log.Error("lost the lease of a partition (was this sidecar stalled?)", "partition", p)
	m.mu.Lock()
	o := m.owned[p]
	delete(m.owned, p)
	m.mu.Unlock()
	if o != nil {
		o.r.Close()
	}
	if !primary {
		return
	}
	n, err := m.kc.EnsureTopic(ctx, m.topic, m.opts.Partitions)
	if err == nil {
		var np int32
		if np, err = m.claim(ctx, n); err == nil {
			if err = m.startPartition(ctx, np, false); err == nil {
				m.mu.Lock()
				m.self.Partition = np
				m.mu.Unlock()
				err = m.register(ctx, "update")
			}
		}
	}
	if err != nil {
		m.log.Error("cannot claim a new partition", "err", err)
	}
}

// watchLoop refreshes the view when a sidecar joins, changes or leaves.
func (m *Mesh) watchLoop(ctx context.Context) {
	ch := m.sub.Channel()
	for {
		select {
		case <-ctx.Done():
			return
		case msg, ok := <-ch:
			if !ok {
				return
			}
			if strings.HasPrefix(msg.Payload, "leave ") {
				select {
				case m.adoptC <- struct{}{}:
				default:
				}
			}
			select {
			case m.refreshC <- struct{}{}:
			default:
			}
		}
	}
}

// refreshLoop reloads the view on notice, and every second to notice
// sidecars that died without a word.
func (m *Mesh) refreshLoop(ctx context.Context) {
	every(ctx, time.Second, m.refreshC, func(ctx context.Context) {
		if err := m.refresh(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("cannot read membership", "err", err)
		}
		m.sweep(time.Now())
	})
}

// commitLoop stores each owned partition's position when it moved.
// commitLoop commits positions soon after records are finished, at most
// every commitSpacing: a sidecar killed -9 leaves the records finished
// since its last commit to be delivered again by the partition's next
// owner, so the sooner the better, but one Redis call per record would
// cost more than the call itself.
func (m *Mesh) commitLoop(ctx context.Context) {
	every(ctx, 50*time.Millisecond, m.commitC, func(ctx context.Context) {
		m.commit(ctx)
		select {
		case <-ctx.Done():
		case <-time.After(commitSpacing):
		}
	})
}

const commitSpacing = 5 * time.Millisecond

func (m *Mesh) commit(ctx context.Context) {
	m.mu.Lock()
	var os []*owned
	for _, o := range m.owned {
		if o.tr.position() != o.committed {
			os = append(os, o)
		}
	}
	m.mu.Unlock()
	for _, o := range os {
		pos := o.tr.position()
		if err := commitScript.Run(ctx, m.rdb, []string{m.keys.Lease(o.p), m.keys.Offset(o.p)}, m.id, pos).Err(); err != nil {
			if ctx.Err() == nil {
				m.log.Warn("cannot commit position", "partition", o.p, "err", err)
			}
			continue
		}
		o.committed = pos
	}
}

// adoptLoop looks for partitions nobody owns that still hold unfinished
// records (their sidecar died or left with work undone), adopts them, and
// releases adopted partitions once they are drained.
func (m *Mesh) adoptLoop(ctx context.Context) {
	every(ctx, time.Second+time.Duration(mrand.IntN(200))*time.Millisecond, m.adoptC, func(ctx context.Context) {
		if err := m.adoptScan(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("scan for orphaned partitions", "err", err)
		}
		m.releaseDrained(ctx)
	})
}

func (m *Mesh) adoptScan(ctx context.Context) error {
	ps, err := m.kc.Partitions(m.topic)
	if err != nil {
		return err
	}
	n := int32(len(ps))
	leaseKeys := make([]string, n)
	offKeys := make([]string, n)
	for p := int32(0); p < n; p++ {
		leaseKeys[p] = m.keys.Lease(p)
		offKeys[p] = m.keys.Offset(p)
	}
	leases, err := m.rdb.MGet(ctx, leaseKeys...).Result()
	if err != nil {
		return err
	}
	offs, err := m.rdb.MGet(ctx, offKeys...).Result()
	if err != nil {
		return err
	}
	for p := int32(0); p < n; p++ {
		if leases[p] != nil {
			continue
		}
		m.mu.Lock()
		_, mine := m.owned[p]
		leaving := m.leaving
		m.mu.Unlock()
		if mine || leaving {
			continue
		}
		hwm, err := m.kc.GetOffset(m.topic, p, sarama.OffsetNewest)
		if err != nil {
			continue
		}
		var pos int64
		if s, ok := offs[p].(string); ok {
			pos, _ = strconv.ParseInt(s, 10, 64)
		} else if pos, err = m.kc.GetOffset(m.topic, p, sarama.OffsetOldest); err != nil {
			continue
		}
		if hwm <= pos {
			continue
		}
		ok, err := m.rdb.SetNX(ctx, m.keys.Lease(p), m.id, m.opts.LeaseTTL).Result()
		if err != nil || !ok {
			continue
		}
		if err := m.startPartition(ctx, p, true); err != nil {
			m.rdb.Del(ctx, m.keys.Lease(p))
			m.log.Warn("cannot adopt partition", "partition", p, "err", err)
			continue
		}
		m.log.Info("adopted an orphaned partition", "partition", p, "from", pos, "to", hwm)
	}
	return nil
}

// releaseDrained gives back adopted partitions with nothing left to do.
func (m *Mesh) releaseDrained(ctx context.Context) {
	now := time.Now().UnixMilli()
	m.mu.Lock()
	var drained []*owned
	for p, o := range m.owned {
		if o.adopted && o.tr.idle() && now-o.lastWork.Load() > 2000 && o.tr.position() >= o.r.HighWaterMark() {
			drained = append(drained, o)
			delete(m.owned, p)
		}
	}
	m.mu.Unlock()
	for _, o := range drained {
		m.release(ctx, o)
		m.log.Info("released a drained partition", "partition", o.p)
	}
}

// release stops reading o and hands its lease back with its position.
func (m *Mesh) release(ctx context.Context, o *owned) {
	o.r.Close()
	if err := releaseScript.Run(ctx, m.rdb, []string{m.keys.Lease(o.p), m.keys.Offset(o.p)}, m.id, o.tr.position()).Err(); err != nil {
		m.log.Warn("cannot release partition", "partition", o.p, "err", err)
	}
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
	done := make(chan struct{})
	go func() { m.work.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
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
	if m.sub != nil {
		m.sub.Close()
	}
	m.log.Info("left", "app", m.opts.App)
}
