package mesh

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

// TestRenewalKeepsTheLatestRecord: a lease renewal running while the
// sidecar announces its actor types must not write the record it had
// before the announcement back over it. Members hear the announcement's
// notice, but a sidecar joining afterwards reads the record: it saw no
// actor types there and placed no instance on this sidecar until its next
// whole read of the members, 10 s later (TestTailCallChainSurvivesHostKill
// failed so when a host's first renewal came with its component's start).
func TestRenewalKeepsTheLatestRecord(t *testing.T) {
	m, rdb := joinedMesh(t, "record")
	ctx := t.Context()
	for round := range 20 {
		// Renewals back to back, as the renewal loop's tick can come at
		// any moment of an announcement.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
					m.renew(ctx)
				}
			}
		})
		time.Sleep(time.Duration(round%4) * time.Millisecond) // land at different points of a renewal
		want := fmt.Sprintf("Type%d", round)
		if err := m.Announce(ctx, nil, []string{want}); err != nil {
			t.Fatal(err)
		}
		close(stop)
		wg.Wait()
		raw, err := rdb.Get(ctx, m.keys.Sidecar(m.ID())).Result()
		if err != nil {
			t.Fatal(err)
		}
		var rec Member
		if err := json.Unmarshal([]byte(raw), &rec); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(rec.Actors, []string{want}) {
			t.Fatalf("round %d: the record says actor types %v after announcing %v: a renewal wrote back what it read before", round, rec.Actors, want)
		}
	}
}

// joinedMesh is a sidecar's mesh of app, joined, on a backend of its own
// (real redis-server and broker); it leaves when the test ends.
func joinedMesh(t *testing.T, app string) (*Mesh, redis.UniversalClient) {
	t.Helper()
	b := testenv.Backend(t)
	cfg := config.Backend{
		KafkaBrokers: strings.Split(b.KafkaBrokers(), ","), KafkaVersion: "2.8.0",
		RedisHost: b.RedisHost(), RedisPort: b.RedisPort(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rdb, err := store.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	kc, err := kafka.Connect(ctx, cfg, app)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	m, err := New(Options{App: app, LeaseTTL: 2 * time.Second, Partitions: 2}, rdb, kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Leave(context.Background()) })
	return m, rdb
}

// TestPlacementKeepsNoticesApplied: a request whose instance is placed on
// a sidecar missing from this sidecar's view (one that joined since) must
// not replace the view with a whole read of its own. Only refreshLoop
// stores whole reads, after the notices that came before them: a read
// that began before a notice and was stored after it undid the notice
// until the next one, or the next whole read 10 s later.
func TestPlacementKeepsNoticesApplied(t *testing.T) {
	m, rdb := joinedMesh(t, "keep")
	ctx := t.Context()
	// Another sidecar hosts actor type T; the instances of T are placed on
	// a live sidecar this one has not heard of.
	other := &Member{ID: "other0000001", Partition: 1, Host: "vm", Port: 1}
	// announce registers other with actor types as register does, and
	// watches the view until it has shown them for 20 ms; it reports
	// whether the view went back to older types meanwhile.
	announce := func(types ...string) (undone []string) {
		other.Actors = types
		rec, _ := json.Marshal(other)
		pipe := rdb.TxPipeline()
		pipe.Set(ctx, m.keys.Sidecar(other.ID), rec, time.Minute)
		pipe.SAdd(ctx, m.keys.Sidecars(), other.ID)
		pipe.Publish(ctx, m.keys.Members(), "update "+other.ID+" "+string(rec))
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		var settled time.Time
		for settled.IsZero() || time.Now().Before(settled) {
			got := m.typesOf(other.ID)
			switch {
			case slices.Equal(got, types):
				if settled.IsZero() {
					settled = time.Now().Add(20 * time.Millisecond)
				}
			case !settled.IsZero():
				return got
			case time.Now().After(deadline):
				t.Fatalf("the notice of %v never reached the view", types)
			}
		}
		return nil
	}
	announce("T")
	const ghost = "ghost0000001"
	if err := rdb.Set(ctx, m.keys.Sidecar(ghost), `{"id":"`+ghost+`","partition":0}`, time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if err := rdb.Set(ctx, m.keys.Placement("T", fmt.Sprint("x", i)), ghost, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 20 {
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
					m.forgetPlacement("T", fmt.Sprint("x", i%50))
					m.place(ctx, "T", fmt.Sprint("x", i%50), "")
				}
			}
		})
		time.Sleep(time.Duration(round%4) * time.Millisecond) // land at different points of a read
		want := []string{"T", fmt.Sprintf("Type%d", round)}
		undone := announce(want...)
		close(stop)
		wg.Wait()
		if undone != nil {
			t.Fatalf("round %d: the view went back to %v after the notice of %v: a whole read that began before it was stored after it", round, undone, want)
		}
	}
}

// typesOf is the actor types of member id in the view.
func (m *Mesh) typesOf(id string) []string {
	if mem := m.view.Load().byID[id]; mem != nil {
		return mem.Actors
	}
	return nil
}
