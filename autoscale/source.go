package autoscale

import (
	"context"
	"fmt"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/redis/go-redis/v9"
)

// Target names what is scaled: a service or an actor type of an app.
type Target struct {
	App string
	// Type is "service" or "actor".
	Type, Name string
}

func (t Target) String() string { return t.App + "/" + t.Type + "/" + t.Name }

// Validate says what is wrong with t, if anything.
func (t Target) Validate() error {
	if t.App == "" {
		return fmt.Errorf("no app")
	}
	if t.Type != "service" && t.Type != "actor" {
		return fmt.Errorf("target type %q: want service or actor", t.Type)
	}
	if t.Name == "" {
		return fmt.Errorf("no service or actor type named")
	}
	return nil
}

// InputFor is t's share of l: its members, in-flight and held requests,
// and the application's records on partitions no live sidecar owns.
func InputFor(l *sidecar.MeshLoad, typ, name string) Input {
	var in Input
	for _, tl := range l.Targets {
		if tl.Type == typ && tl.Name == name {
			in.Members, in.InFlight, in.Held = tl.Members, tl.InFlight, tl.Held
		}
	}
	for _, p := range l.Partitions {
		if p.Owner == "" {
			in.Orphaned += p.Unread
		}
	}
	return in
}

// Source reads the load of any application of one backend: one Redis
// client and one Kafka client, shared by every target polled.
type Source struct {
	rdb redis.UniversalClient
	kc  sarama.Client
}

// Dial connects to the backend's Redis and Kafka.
func Dial(ctx context.Context, b config.Backend) (*Source, error) {
	rdb, err := store.Connect(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("redis: %w", err)
	}
	s := &Source{rdb: rdb}
	sc, err := kafka.SaramaConfig(b, "kar-scaler")
	if err == nil {
		s.kc, err = sarama.NewClient(b.KafkaBrokers, sc)
	}
	if err != nil {
		rdb.Close()
		return nil, fmt.Errorf("kafka: %w", err)
	}
	return s, nil
}

// Close closes the clients.
func (s *Source) Close() error {
	s.kc.Close()
	return s.rdb.Close()
}

// Wake subscribes to app's wake channel (store.Keys.LoadWake): a value
// comes on the channel returned when some sidecar of app has just begun
// to hold requests for a target with no replica, and has published its
// load. The subscription is in place when Wake returns and ends with ctx.
func (s *Source) Wake(ctx context.Context, app string) (<-chan struct{}, error) {
	ps := s.rdb.Subscribe(ctx, store.NewKeys(app).LoadWake())
	if _, err := ps.Receive(ctx); err != nil {
		ps.Close()
		return nil, fmt.Errorf("subscribe to %s's wake channel: %w", app, err)
	}
	out := make(chan struct{}, 1)
	go func() {
		defer ps.Close()
		ch := ps.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- struct{}{}:
				default: // a read is already due
				}
			}
		}
	}()
	return out, nil
}

// Read is the load of t now.
func (s *Source) Read(ctx context.Context, t Target) (Input, error) {
	l, err := sidecar.ReadLoad(ctx, s.rdb, store.NewKeys(t.App), s.kc, t.App)
	if err != nil {
		return Input{}, fmt.Errorf("load of %s: %w", t.App, err)
	}
	return InputFor(l, t.Type, t.Name), nil
}
