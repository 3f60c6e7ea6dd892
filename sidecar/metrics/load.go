package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Load is what one sidecar publishes in Redis about its work, every
// LoadPeriod, for `kar get -s load` and `kar top`: an operator's view of
// the whole mesh is the sum of its members' loads, read from Redis rather
// than asked of one sidecar.
type Load struct {
	At      time.Time    `json:"at"`
	Targets []TargetLoad `json:"targets,omitempty"`
}

// TargetLoad is one service's or actor type's share of a sidecar's load.
type TargetLoad struct {
	Type string `json:"type"` // "service" or "actor"
	Name string `json:"name"`
	// InFlight: requests its component runs now; Held: requests held here
	// for a component of it to join; Served: answered since the sidecar
	// started, Errors the 5xx among them (or no answer at all);
	// PerSecond and ErrorsPerSecond over the last period.
	InFlight        int64   `json:"inFlight"`
	Held            int64   `json:"held"`
	Served          int64   `json:"served"`
	Errors          int64   `json:"errors"`
	PerSecond       float64 `json:"perSecond"`
	ErrorsPerSecond float64 `json:"errorsPerSecond"`
	// Latency is how long the component took with the requests it
	// returned in the last LatencyWindow, as [bucket, count] pairs of
	// nonempty buckets (LatencyQuantile reads them), so that a reader
	// can merge the sidecars' into the mesh's quantiles.
	Latency [][2]int64 `json:"latency,omitempty"`
}

// LoadPeriod is how often a sidecar publishes its load; a published load
// lives three periods, so a dead sidecar's load goes with it.
const LoadPeriod = time.Second

// LatencyWindow is the span of the published latencies: ten periods, as
// a p99 over one second of a service answering a few calls a second
// would be its slowest call, noise.
const LatencyWindow = 10 * LoadPeriod

// Latency buckets: log-linear in microseconds, four to a power of two
// (an error of at most 25% of the value, interpolated within a bucket),
// from 1 µs to 2^34 µs (4.8 hours; slower is counted in the last).
const (
	subBuckets = 4
	nLatency   = 34 * subBuckets
)

// latencyBucket is d's bucket: 0-3 hold 0-3 µs, then each power of two
// is cut in four.
func latencyBucket(d time.Duration) int {
	us := uint64(max(d, 0) / time.Microsecond)
	if us < subBuckets {
		return int(us)
	}
	e := bits.Len64(us) - 1 // 2 or more
	i := (e-1)*subBuckets + int(us>>(e-2)&(subBuckets-1))
	return min(i, nLatency-1)
}

// bucketBounds are bucket i's bounds in microseconds.
func bucketBounds(i int) (lo, hi float64) {
	if i < subBuckets {
		return float64(i), float64(i + 1)
	}
	e, sub := i/subBuckets+1, i%subBuckets
	return float64(uint64(subBuckets+sub) << (e - 2)), float64(uint64(subBuckets+sub+1) << (e - 2))
}

// LatencyQuantile is the q-quantile, in milliseconds, of latency buckets
// as published in TargetLoad.Latency (possibly merged from several
// sidecars: pairs of one bucket may repeat), interpolated within its
// bucket; 0 when there are none.
func LatencyQuantile(buckets [][2]int64, q float64) float64 {
	var counts [nLatency]int64
	var total int64
	for _, b := range buckets {
		if b[0] >= 0 && b[0] < nLatency && b[1] > 0 {
			counts[b[0]] += b[1]
			total += b[1]
		}
	}
	if total == 0 {
		return 0
	}
	rank := q * float64(total)
	var seen int64
	for i, n := range counts {
		if n == 0 {
			continue
		}
		if float64(seen+n) >= rank {
			lo, hi := bucketBounds(i)
			frac := (rank - float64(seen)) / float64(n)
			return (lo + (hi-lo)*max(frac, 0)) / 1000
		}
		seen += n
	}
	lo, _ := bucketBounds(nLatency - 1)
	return lo / 1000
}

// Target is a target's series, returned by Begin for End.
type Target = targetSeries

// Begin notes that the component starts running a request of a target
// (nil-safe: End on the result of a nil Metrics does nothing).
func (m *Metrics) Begin(actor bool, target string) *Target {
	if m == nil {
		return nil
	}
	t := m.target(actor, target)
	t.inFlight.Add(1)
	return t
}

// End notes that the request Begin noted returned after d: two atomic
// additions, no allocation.
func (t *Target) End(d time.Duration) {
	if t != nil {
		t.inFlight.Add(-1)
		t.took[latencyBucket(d)].Add(1)
	}
}

// targetTotals are a target's cumulative counts at one snapshot.
type targetTotals struct {
	served, errors int64
	took           [nLatency]int64
}

// loadHistory holds the publisher's snapshots of the last LatencyWindow,
// oldest first, to turn cumulative counts into rates and windows.
type loadHistory struct {
	at    []time.Time
	snaps []map[*targetSeries]*targetTotals
}

// snapshot reads the load of every target seen, with its rates since
// the previous snapshot and its latencies since the oldest one kept.
func (m *Metrics) snapshot(h *loadHistory, now time.Time) []TargetLoad { return m.snap(h, now, true) }

// snap is snapshot; it keeps the snapshot in h only when record is set
// (a publication between periods leaves the windows as they are).
func (m *Metrics) snap(h *loadHistory, now time.Time, record bool) []TargetLoad {
	cur := map[*targetSeries]*targetTotals{}
	var out []TargetLoad
	var zero targetTotals
	for _, l := range []*labels[*targetSeries]{&m.services, &m.actors} {
		l.mu.RLock()
		for _, t := range l.m {
			tot := &targetTotals{served: t.servedN.Load(), errors: t.errN.Load()}
			for i := range tot.took {
				tot.took[i] = t.took[i].Load()
			}
			cur[t] = tot
			tl := TargetLoad{Type: t.typ, Name: t.name, InFlight: t.inFlight.Load(), Held: t.heldN.Load(), Served: tot.served, Errors: tot.errors}
			if n := len(h.snaps); n > 0 {
				prev, oldest := h.snaps[n-1][t], h.snaps[0][t]
				if prev == nil {
					prev = &zero
				}
				if oldest == nil {
					oldest = &zero
				}
				if period := now.Sub(h.at[n-1]).Seconds(); period > 0 {
					tl.PerSecond = float64(tot.served-prev.served) / period
					tl.ErrorsPerSecond = float64(tot.errors-prev.errors) / period
				}
				for i, c := range tot.took {
					if d := c - oldest.took[i]; d > 0 {
						tl.Latency = append(tl.Latency, [2]int64{int64(i), d})
					}
				}
			}
			out = append(out, tl)
		}
		l.mu.RUnlock()
	}
	if record {
		h.at = append(h.at, now)
		h.snaps = append(h.snaps, cur)
		if len(h.at) > int(LatencyWindow/LoadPeriod) {
			h.at, h.snaps = h.at[1:], h.snaps[1:]
		}
	}
	slices.SortFunc(out, func(a, b TargetLoad) int {
		return strings.Compare(a.Type+"/"+a.Name, b.Type+"/"+b.Name)
	})
	return out
}

// PublishLoad writes this sidecar's load to key every LoadPeriod until
// ctx ends, then deletes it. When a target's held requests rise from none
// it publishes at once, between periods, and then announces it on the
// Redis channel wake (when not ""), which scalers listen to: a request
// for a target scaled to zero wakes it in milliseconds, not a period.
func (m *Metrics) PublishLoad(ctx context.Context, rdb redis.UniversalClient, key, wake string, log *slog.Logger) {
	if m == nil {
		return
	}
	t := time.NewTicker(LoadPeriod)
	defer t.Stop()
	var h loadHistory
	m.snapshot(&h, time.Now()) // what came before starts the windows
	for {
		held := false
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rdb.Del(dctx, key)
			cancel()
			return
		case <-t.C:
		case <-m.heldWake:
			held = true
		}
		now := time.Now()
		load := Load{At: now.UTC(), Targets: m.snap(&h, now, !held)}
		b, _ := json.Marshal(load)
		err := rdb.Set(ctx, key, b, 3*LoadPeriod).Err()
		if err == nil && held && wake != "" {
			// After the load is written: a scaler woken reads it.
			err = rdb.Publish(ctx, wake, key).Err()
		}
		if err != nil && ctx.Err() == nil {
			log.Debug("cannot publish the sidecar's load", "err", err)
		}
	}
}
