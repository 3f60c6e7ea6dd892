package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Load is what one sidecar publishes in Redis about its work, every
// LoadPeriod, for `kar get -s load`: an operator's view of the whole mesh
// is the sum of its members' loads, read from Redis rather than asked of
// one sidecar.
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
	// started, PerSecond over the last period.
	InFlight  int64   `json:"inFlight"`
	Held      int64   `json:"held"`
	Served    int64   `json:"served"`
	PerSecond float64 `json:"perSecond"`
}

// LoadPeriod is how often a sidecar publishes its load; a published load
// lives three periods, so a dead sidecar's load goes with it.
const LoadPeriod = time.Second

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

// End notes that the request Begin noted returned.
func (t *Target) End() {
	if t != nil {
		t.inFlight.Add(-1)
	}
}

// snapshot reads the load of every target seen, with the rate of
// answers since prev (the previous snapshot, taken period ago).
func (m *Metrics) snapshot(prev map[string]int64, period time.Duration) []TargetLoad {
	var out []TargetLoad
	for _, l := range []*labels[*targetSeries]{&m.services, &m.actors} {
		l.mu.RLock()
		for _, t := range l.m {
			tl := TargetLoad{Type: t.typ, Name: t.name, InFlight: t.inFlight.Load(), Held: t.heldN.Load(), Served: t.servedN.Load()}
			if p, ok := prev[tl.Type+"/"+tl.Name]; ok && period > 0 {
				tl.PerSecond = float64(tl.Served-p) / period.Seconds()
			}
			out = append(out, tl)
		}
		l.mu.RUnlock()
	}
	slices.SortFunc(out, func(a, b TargetLoad) int {
		return strings.Compare(a.Type+"/"+a.Name, b.Type+"/"+b.Name)
	})
	return out
}

// PublishLoad writes this sidecar's load to key every LoadPeriod until
// ctx ends, then deletes it.
func (m *Metrics) PublishLoad(ctx context.Context, rdb redis.UniversalClient, key string, log *slog.Logger) {
	if m == nil {
		return
	}
	t := time.NewTicker(LoadPeriod)
	defer t.Stop()
	prev := map[string]int64{}
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			rdb.Del(dctx, key)
			cancel()
			return
		case <-t.C:
		}
		now := time.Now()
		load := Load{At: now.UTC(), Targets: m.snapshot(prev, now.Sub(last))}
		last = now
		clear(prev)
		for _, tl := range load.Targets {
			prev[tl.Type+"/"+tl.Name] = tl.Served
		}
		b, _ := json.Marshal(load)
		if err := rdb.Set(ctx, key, b, 3*LoadPeriod).Err(); err != nil && ctx.Err() == nil {
			log.Debug("cannot publish the sidecar's load", "err", err)
		}
	}
}
