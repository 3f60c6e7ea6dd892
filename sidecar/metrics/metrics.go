// Package metrics holds one sidecar's Prometheus collectors, served at GET
// /metrics on the runtime port: KAR 1.3.10's own metrics under their names
// and buckets (so that dashboards made for KAR keep working) and the
// mesh's, named in Prometheus' conventions.
//
// A Metrics is made per sidecar, with a registry of its own (no
// package-level state), and passed to what records. Every method is safe
// on a nil *Metrics, which records nothing: one-shot commands and unit
// tests run the mesh without metrics.
//
// Labels are low-cardinality: kind, target type (service or actor), target
// (a service name or an actor type), status class; never ids. Names come
// from callers, so the distinct targets and KAR's path labels are capped:
// past the cap they are counted under "other".
package metrics

import (
	"net/http"
	"regexp"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Caps on distinct label values taken from requests.
const (
	MaxTargets = 200
	MaxPaths   = 500
	// Other stands for the label values past a cap.
	Other = "other"
)

// Kind is how a request was made, for the request counters.
type Kind int

// Kinds of request. A caller counts Sync, Async, Promise, Event (an
// event delivered to an actor) and Reminder (a reminder fired); a host
// counts Sync, Async and TailCall (a step of a tail call).
const (
	Sync Kind = iota
	Async
	Promise
	TailCall
	Event
	Reminder
	nKinds
)

var kindNames = [nKinds]string{"sync", "async", "promise", "tailcall", "event", "reminder"}

func (k Kind) String() string { return kindNames[k] }

// Status classes: the response's class, or "error" when there was none
// (the request could not be sent, or the caller gave up waiting).
const (
	class2xx = iota
	class3xx
	class4xx
	class5xx
	classError
	nClasses
)

var classNames = [nClasses]string{"2xx", "3xx", "4xx", "5xx", "error"}

// NoResponse is the status to pass when a request got no response.
const NoResponse = -1

func classOf(status int) int {
	switch {
	case status < 0:
		return classError
	case status < 300:
		return class2xx
	case status < 400:
		return class3xx
	case status < 500:
		return class4xx
	default:
		return class5xx
	}
}

// Metrics is one sidecar's collectors.
type Metrics struct {
	// Registry holds every collector below and the Go and process
	// collectors; Handler serves it.
	Registry *prometheus.Registry

	// KAR's.
	userCode           *prometheus.HistogramVec
	redis              prometheus.Histogram
	cancelledReminders prometheus.Gauge

	// The mesh's.
	sent, served     *prometheus.CounterVec
	callDuration     *prometheus.HistogramVec
	produceDuration  prometheus.Histogram
	produceErrors    prometheus.Counter
	partitionsAdopt  prometheus.Counter
	recordsAdopted   prometheus.Counter
	redeliveries     prometheus.Counter
	heldNow          *prometheus.GaugeVec
	held, heldExpire *prometheus.CounterVec
	activations      *prometheus.CounterVec
	deactivations    *prometheus.CounterVec
	busyWaits        *prometheus.CounterVec
	eventDeliveries  *prometheus.CounterVec
	eventDeadLetters prometheus.Counter
	reminderLateness prometheus.Histogram
	leaseRenewals    prometheus.Counter
	leaseFailures    prometheus.Counter
	leaseLosses      prometheus.Counter
	reconnects       *prometheus.CounterVec

	services, actors labels[*targetSeries]
	paths            labels[prometheus.Observer]
	// actorPaths: KAR's "Type:/method" path label, by type then method,
	// so that finding it makes no string per call.
	actorPaths labels[*labels[prometheus.Observer]]
	pathCount  atomic.Int64

	eventResults [nEventResults]prometheus.Counter

	// heldWake has a value when a target's held requests rose from none:
	// PublishLoad then publishes at once rather than at its next period,
	// since that is what wakes a target scaled to zero (issue 14).
	heldWake chan struct{}
}

// New makes the collectors of the sidecar of application app and
// registers them, with the Go and process collectors, on a new registry.
func New(app string) *Metrics {
	reg := prometheus.NewRegistry()
	app1 := prometheus.Labels{"app": app}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: app1}, labels)
	}
	histogram1 := func(name, help string, start, factor float64, n int) prometheus.Histogram {
		return prometheus.NewHistogram(prometheus.HistogramOpts{Name: name, Help: help, ConstLabels: app1, Buckets: prometheus.ExponentialBuckets(start, factor, n)})
	}
	counter1 := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: app1})
	}
	m := &Metrics{
		Registry: reg,
		heldWake: make(chan struct{}, 1),
		userCode: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kar_user_code_invocation_durations_histogram_seconds",
			Help:    "KAR Actor/Service local invocation duration distributions.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 10),
		}, []string{"path"}),
		redis: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kar_redis_request_durations_histogram_seconds",
			Help:    "KAR Redis request duration distributions.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 12),
		}),
		cancelledReminders: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kar_actors_cancelled_reminders_gauge",
			Help: "Reminders cancelled through this sidecar since it started.",
		}),

		sent: counter("kar_requests_sent_total",
			"Requests this sidecar sent into the mesh on behalf of its component (or of a reminder or event subscription), by outcome.",
			"kind", "target_type", "target", "status_class"),
		served: counter("kar_requests_served_total",
			"Requests this sidecar's component served, by the status of the answer.",
			"kind", "target_type", "target", "status_class"),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kar_request_duration_seconds", ConstLabels: app1,
			Help:    "End-to-end latency of synchronous calls as their caller saw it, from the request to its answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"target_type", "target"}),
		produceDuration: histogram1("kar_kafka_produce_duration_seconds", "Time to make a mesh record durable in Kafka (acks=all).", 0.0005, 2, 14),
		produceErrors:   counter1("kar_kafka_produce_errors_total", "Mesh records Kafka did not take (each attempt)."),
		partitionsAdopt: counter1("kar_partitions_adopted_total", "Partitions of dead or departed sidecars this sidecar adopted."),
		recordsAdopted:  counter1("kar_records_adopted_total", "Records read on adopted partitions."),
		redeliveries:    counter1("kar_redeliveries_total", "Requests read again below a partition's previous owner's high-water mark: they may have run before."),
		heldNow: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kar_held_requests", ConstLabels: app1,
			Help: "Requests held here waiting for a component of their target to join.",
		}, []string{"target_type", "target"}),
		held: counter("kar_held_requests_total",
			"Requests that had to wait for a component of their target to join.", "target_type", "target"),
		heldExpire: counter("kar_held_requests_expired_total",
			"Held requests answered 408 because no component joined within -missing_component_timeout.", "target_type", "target"),
		activations: counter("kar_actor_activations_total",
			"Actor instances activated on this sidecar's component.", "actor_type"),
		deactivations: counter("kar_actor_deactivations_total",
			"Actor instances deactivated on this sidecar's component.", "actor_type"),
		busyWaits: counter("kar_actor_busy_waits_total",
			"Actor calls that waited for their instance, held by another session.", "actor_type"),
		eventDeliveries: counter("kar_event_deliveries_total",
			"Attempts to deliver an event to an actor method, by result: delivered, failed (retried) or rejected (dead-lettered at once).", "result"),
		eventDeadLetters: counter1("kar_events_dead_lettered_total", "Events written to the application's dead-letter topic."),
		reminderLateness: histogram1("kar_reminder_lateness_seconds", "How late reminders fired here were, after their target time.", 0.01, 2, 12),
		leaseRenewals:    counter1("kar_lease_renewals_total", "Partition leases renewed."),
		leaseFailures:    counter1("kar_lease_renewal_failures_total", "Lease renewals Redis did not answer."),
		leaseLosses:      counter1("kar_lease_losses_total", "Partition leases lost to another sidecar."),
		reconnects: counter("kar_backend_reconnects_total",
			"Connections to a backend opened again after one failed.", "backend"),
	}
	m.services.max, m.actors.max, m.paths.max, m.actorPaths.max = MaxTargets, MaxTargets, MaxPaths, MaxTargets
	for i := range m.eventResults {
		m.eventResults[i] = m.eventDeliveries.WithLabelValues(eventResultNames[i])
	}
	// Series that exist from the start, at 0, so that a dashboard's
	// rate() over them has a start and an absent series means a sidecar
	// that is not scraped.
	for _, b := range []string{"redis", "kafka"} {
		m.reconnects.WithLabelValues(b)
	}
	// The Go collector's defaults; the live heap as of the last collection
	// (go_gc_heap_live_bytes): what a sidecar really holds, where the heap's
	// in-use figures swing with the garbage made since; and the CPU time
	// the collector took (go_cpu_classes_gc_total_cpu_seconds_total), the
	// price of a smaller heap.
	goColl := collectors.NewGoCollector(collectors.WithGoCollectorRuntimeMetrics(
		collectors.GoRuntimeMetricsRule{Matcher: regexp.MustCompile(`^/gc/heap/live:bytes$|^/cpu/classes/gc/total:cpu-seconds$`)}))
	reg.MustRegister(goColl, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.userCode, m.redis, m.cancelledReminders,
		m.sent, m.served, m.callDuration, m.produceDuration, m.produceErrors, m.partitionsAdopt, m.recordsAdopted,
		m.redeliveries, m.heldNow, m.held, m.heldExpire, m.activations, m.deactivations, m.busyWaits,
		m.eventDeliveries, m.eventDeadLetters, m.reminderLateness, m.leaseRenewals, m.leaseFailures, m.leaseLosses,
		m.reconnects)
	return m
}

// Handler serves the registry in Prometheus' exposition formats,
// uncompressed: a gzip writer is 800 KB of heap per scrape for a body of
// some tens of KB that travels over a Pod's network or the loopback.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry, DisableCompression: true})
}

// GaugeFunc registers a gauge read when scraped (KAR's active reminders,
// read from Redis).
func (m *Metrics) GaugeFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// CounterFunc registers a counter read when scraped (the mesh's count of
// poison requests).
func (m *Metrics) CounterFunc(name, help string, f func() float64) {
	if m == nil {
		return
	}
	m.Registry.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// labels maps label values to their resolved series, creating them on
// first sight up to max distinct values; the lookup of a known value
// takes a read lock and allocates nothing.
type labels[T any] struct {
	mu  sync.RWMutex
	m   map[string]T
	max int
	// prefix of the values made (an actor type's paths).
	prefix string
}

func (l *labels[T]) get(v string, mk func(string) T) T {
	l.mu.RLock()
	s, ok := l.m[v]
	l.mu.RUnlock()
	if ok {
		return s
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.m[v]; ok {
		return s
	}
	if l.m == nil {
		l.m = map[string]T{}
	}
	key := v
	if len(l.m) >= l.max {
		// Past the cap every new value shares one series, kept under a
		// key no label value has.
		if s, ok := l.m[otherKey]; ok {
			return s
		}
		key, v = otherKey, Other
	}
	s = mk(v)
	l.m[key] = s
	return s
}

// targetSeries are the series of one target, resolved as first used.
type targetSeries struct {
	typ, name string
	m         *Metrics
	sent      [nKinds][nClasses]atomic.Pointer[prometheus.Counter]
	served    [nKinds][nClasses]atomic.Pointer[prometheus.Counter]
	latency   prometheus.Observer
	heldNow   prometheus.Gauge
	held      prometheus.Counter
	expired   prometheus.Counter
	// For the load this sidecar publishes (load.go).
	inFlight, heldN, servedN, errN atomic.Int64
	took                           [nLatency]atomic.Int64
}

const otherKey = "\x00" + Other

func (m *Metrics) target(actor bool, name string) *targetSeries {
	typ, l := "service", &m.services
	if actor {
		typ, l = "actor", &m.actors
	}
	return l.get(name, func(name string) *targetSeries {
		if actor {
			// An actor type's instance counters exist, at 0, from its
			// first call.
			for _, vec := range []*prometheus.CounterVec{m.activations, m.deactivations, m.busyWaits} {
				vec.WithLabelValues(name)
			}
		}
		return &targetSeries{
			typ: typ, name: name, m: m,
			latency: m.callDuration.WithLabelValues(typ, name),
			heldNow: m.heldNow.WithLabelValues(typ, name),
			held:    m.held.WithLabelValues(typ, name),
			expired: m.heldExpire.WithLabelValues(typ, name),
		}
	})
}

func (t *targetSeries) counter(slot *atomic.Pointer[prometheus.Counter], vec *prometheus.CounterVec, k Kind, class int) prometheus.Counter {
	if c := slot.Load(); c != nil {
		return *c
	}
	c := vec.WithLabelValues(kindNames[k], t.typ, t.name, classNames[class])
	slot.CompareAndSwap(nil, &c)
	return c
}

// Sent counts a request this sidecar sent for its component, with the
// status of its answer (or NoResponse), and for a synchronous call the
// latency its caller saw (0: not a call awaited here).
func (m *Metrics) Sent(k Kind, actor bool, target string, status int, latency time.Duration) {
	if m == nil {
		return
	}
	t := m.target(actor, target)
	c := classOf(status)
	t.counter(&t.sent[k][c], m.sent, k, c).Inc()
	if latency > 0 {
		t.latency.Observe(latency.Seconds())
	}
}

// Served counts a request this sidecar's component answered.
func (m *Metrics) Served(k Kind, actor bool, target string, status int) {
	if m == nil {
		return
	}
	t := m.target(actor, target)
	c := classOf(status)
	t.counter(&t.served[k][c], m.served, k, c).Inc()
	t.servedN.Add(1)
	if c >= class5xx {
		t.errN.Add(1)
	}
}

// Held notes a request held for a missing component (+1), forwarded or
// served once one joined (-1).
func (m *Metrics) Held(actor bool, target string, delta int) {
	if m == nil {
		return
	}
	t := m.target(actor, target)
	if delta > 0 {
		t.held.Add(float64(delta))
	}
	t.heldNow.Add(float64(delta))
	if t.heldN.Add(int64(delta)) == int64(delta) && delta > 0 {
		select {
		case m.heldWake <- struct{}{}:
		default: // a publication is already due
		}
	}
}

// HeldExpired notes a held request answered 408 (it is no longer held).
func (m *Metrics) HeldExpired(actor bool, target string) {
	if m == nil {
		return
	}
	t := m.target(actor, target)
	t.expired.Inc()
	t.heldNow.Dec()
	t.heldN.Add(-1)
}

// UserCode observes a call from the sidecar to its component: KAR's
// path label is the service path for a service, "Type:/method" for an
// actor method.
func (m *Metrics) UserCode(actorType, path string, d time.Duration) {
	if m == nil {
		return
	}
	m.userCodeObserver(actorType, path).Observe(d.Seconds())
}

func (m *Metrics) userCodeObserver(actorType, path string) prometheus.Observer {
	if actorType == "" {
		return m.paths.get(path, m.newPath)
	}
	l := m.actorPaths.get(actorType, func(typ string) *labels[prometheus.Observer] {
		return &labels[prometheus.Observer]{max: MaxPaths, prefix: typ + ":"}
	})
	return l.get(path, func(method string) prometheus.Observer { return m.newPath(l.prefix + method) })
}

// newPath makes a path series, up to MaxPaths of them across services and
// actor types.
func (m *Metrics) newPath(label string) prometheus.Observer {
	if m.pathCount.Add(1) > MaxPaths {
		label = Other
	}
	return m.userCode.WithLabelValues(label)
}

// Redis observes one Redis request (a command or a pipeline).
func (m *Metrics) Redis(d time.Duration) {
	if m != nil {
		m.redis.Observe(d.Seconds())
	}
}

// Produce observes one produce of a mesh record: its time, or its failure.
func (m *Metrics) Produce(d time.Duration, err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.produceErrors.Inc()
		return
	}
	m.produceDuration.Observe(d.Seconds())
}

// PartitionAdopted counts a partition adopted from a dead sidecar.
func (m *Metrics) PartitionAdopted() {
	if m != nil {
		m.partitionsAdopt.Inc()
	}
}

// RecordRead counts a record read on an adopted partition and a
// redelivery (a request its previous owner may have run).
func (m *Metrics) RecordRead(adopted, redelivery bool) {
	if m == nil {
		return
	}
	if adopted {
		m.recordsAdopted.Inc()
	}
	if redelivery {
		m.redeliveries.Inc()
	}
}

// Activated, Deactivated and BusyWait count actor instance events.
func (m *Metrics) Activated(actorType string) {
	if m != nil {
		m.actorCounter(m.activations, actorType).Inc()
	}
}

// Deactivated counts an instance deactivated.
func (m *Metrics) Deactivated(actorType string) {
	if m != nil {
		m.actorCounter(m.deactivations, actorType).Inc()
	}
}

// BusyWait counts an actor call that waited for its instance.
func (m *Metrics) BusyWait(actorType string) {
	if m != nil {
		m.actorCounter(m.busyWaits, actorType).Inc()
	}
}

// actorCounter resolves a per-type counter, under the same cap as targets.
func (m *Metrics) actorCounter(vec *prometheus.CounterVec, actorType string) prometheus.Counter {
	return vec.WithLabelValues(m.target(true, actorType).name)
}

// Results of an event delivery attempt.
const (
	EventDelivered = iota
	EventFailed
	EventRejected
	nEventResults
)

var eventResultNames = [nEventResults]string{"delivered", "failed", "rejected"}

// EventDelivery counts one attempt to deliver an event.
func (m *Metrics) EventDelivery(result int) {
	if m != nil {
		m.eventResults[result].Inc()
	}
}

// EventDeadLettered counts an event written to the dead-letter topic.
func (m *Metrics) EventDeadLettered() {
	if m != nil {
		m.eventDeadLetters.Inc()
	}
}

// ReminderFired observes how late a reminder fired.
func (m *Metrics) ReminderFired(late time.Duration) {
	if m != nil {
		m.reminderLateness.Observe(max(late, 0).Seconds())
	}
}

// RemindersCancelled counts reminders cancelled through this sidecar.
func (m *Metrics) RemindersCancelled(n int) {
	if m != nil {
		m.cancelledReminders.Add(float64(n))
	}
}

// LeaseRenewals counts n leases renewed, or a renewal that failed (n < 0).
func (m *Metrics) LeaseRenewals(n int) {
	if m == nil {
		return
	}
	if n < 0 {
		m.leaseFailures.Inc()
		return
	}
	m.leaseRenewals.Add(float64(n))
}

// LeaseLost counts a lease lost to another sidecar.
func (m *Metrics) LeaseLost() {
	if m != nil {
		m.leaseLosses.Inc()
	}
}

// Reconnect counts a connection to a backend ("redis", "kafka") opened
// again after one failed.
func (m *Metrics) Reconnect(backend string) {
	if m != nil {
		m.reconnects.WithLabelValues(backend).Inc()
	}
}
