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
	defer rdb.Close()
	kc, err := kafka.Connect(ctx, cfg, "record")
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	m, err := New(Options{App: "record", LeaseTTL: 2 * time.Second, Partitions: 2}, rdb, kc)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Join(ctx); err != nil {
		t.Fatal(err)
	}
	defer m.Leave(ctx)

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
