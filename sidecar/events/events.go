// Package events is kar's publish/subscribe of CloudEvents: the event routes
// of the KAR REST API (/kar/v1/event/..., /kar/v1/actor/{type}/{id}/events...),
// a Knative Eventing ingress (/kar/v1/event/{topic}/cloudevents), and the
// runner that delivers each subscription's events in order, one at a time,
// at least once.
//
// Events live in Kafka in CloudEvents binary mode (ce_* headers, the data
// as the record value), one Kafka topic per event topic
// (kafka.EventTopic). Subscriptions live in Redis: the hash Subscriptions()
// (field "type/id/subscriptionId", value the API's source JSON), the hash
// offsetsKey of each subscription's committed offsets, and a leaseKey naming
// the one sidecar delivering it. See Run.
package events

import (
	"context"
	"errors"
	"fmt"
	"github.com/kar-runtime/kar/sidecar/httpx"
	"hash/fnv"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
)

// DeliverFunc delivers one event to an actor method: the sidecar makes it a
// synchronous actor call of path on actorType/actorID with body as the
// request body. body is the JSON array of the method's arguments, [event],
// and contentType is always application/json (what the event looks like
// inside the array depends on the subscription's content type; see
// deliveryArg). It returns nil once the method completed; an error makes
// the runner retry the same event later, up to Options.MaxAttempts, and an
// error made with Rejected sends the event to the dead-letter topic at once.
type DeliverFunc func(ctx context.Context, actorType, actorID, path, contentType string, body []byte) error

// Rejected marks a delivery error that no retry can fix (the actor has no
// such method, or refused the event with a 4xx): the runner sends the event
// to the application's dead-letter topic at once instead of retrying it.
func Rejected(err error) error { return rejectedErr{err} }

type rejectedErr struct{ error }

func (e rejectedErr) Unwrap() error { return e.error }

// Options configure a Service. Zero durations mean their defaults.
type Options struct {
	App   string
	Redis redis.UniversalClient
	Kafka *kafka.Client
	Keys  store.Keys // default store.NewKeys(App)
	// Deliver calls actor methods (required for Run).
	Deliver DeliverFunc
	Logger  *slog.Logger
	// SidecarID names this sidecar in subscription leases (required for Run).
	SidecarID string

	// LeaseTTL is how long a subscription lease lives unrenewed: how soon
	// another sidecar takes over a dead one's subscriptions. Default 5s.
	LeaseTTL time.Duration
	// Poll is how often Run looks for subscriptions without a live runner
	// (it also wakes on every change). Default 1s.
	Poll time.Duration
	// RetryMin and RetryMax bound the exponential backoff between delivery
	// attempts of one event. Defaults 100ms and 10s.
	RetryMin, RetryMax time.Duration
	// MaxAttempts bounds the delivery attempts of one event to an actor
	// method: after that many failures the event goes to the application's
	// dead-letter topic (kafka.DeadLetterTopic) and the subscription goes
	// on with the next. Default 10 (with the default backoff, about 40 s of
	// retries). Sink subscriptions have their own "retry" instead.
	MaxAttempts int
	// MaxBodyBytes bounds request bodies (413 beyond). Default 900 KiB: an
	// event must fit Kafka's default message size with its headers.
	MaxBodyBytes int64
	// HTTPClient posts to sinks. Default: a client with a 30s timeout.
	HTTPClient *http.Client
	// MaxIngressInFlight bounds the ingress requests being written to Kafka
	// at once; beyond it the ingress answers 429 (Knative retries). Default 256.
	MaxIngressInFlight int
	// DeadLettered, if set, is told of each event written to the
	// dead-letter topic (the sidecar's metrics count them).
	DeadLettered func()
	// Notices is the sidecar's pub/sub connection Run hears of changed
	// subscriptions on (nil: Run opens one of its own).
	Notices *store.Notices
}

func (o Options) withDefaults() Options {
	if o.Keys == (store.Keys{}) {
		o.Keys = store.NewKeys(o.App)
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 5 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.RetryMin <= 0 {
		o.RetryMin = 100 * time.Millisecond
	}
	if o.RetryMax <= 0 {
		o.RetryMax = 10 * time.Second
	}
	if o.RetryMax < o.RetryMin {
		o.RetryMax = o.RetryMin
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 900 << 10
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxIngressInFlight <= 0 {
		o.MaxIngressInFlight = 256
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	return o
}

// Service is the events of one application.
type Service struct {
	opts Options
	rdb  redis.UniversalClient
	kc   *kafka.Client
	keys store.Keys
	log  *slog.Logger
	// wake tells this process's runner at once that subscriptions changed.
	wake chan struct{}
	rr   atomic.Uint32 // round robin over the partitions of a topic
	// ingress holds a token per ingress request in progress.
	ingress chan struct{}
}

// New returns the events service of opts.App.
func New(opts Options) *Service {
	opts = opts.withDefaults()
	return &Service{opts: opts, rdb: opts.Redis, kc: opts.Kafka, keys: opts.Keys, log: opts.Logger, wake: make(chan struct{}, 1),
		ingress: make(chan struct{}, opts.MaxIngressInFlight)}
}

func (s *Service) kafkaTopic(topic string) string { return kafka.EventTopic(topic) }

// createTopic creates an event topic (PUT /kar/v1/event/{topic}).
func (s *Service) createTopic(ctx context.Context, topic string, o kafka.TopicOptions) (bool, error) {
	return s.kc.CreateTopic(ctx, s.kafkaTopic(topic), o)
}

// partitions returns the partition count of an event topic, creating the
// topic (one partition: one order) when it does not exist.
func (s *Service) partitions(ctx context.Context, topic string) (int32, error) {
	kt := s.kafkaTopic(topic)
	if ps, err := s.kc.Partitions(kt); err == nil && len(ps) > 0 {
		return int32(len(ps)), nil
	}
	return s.kc.EnsureTopic(ctx, kt, 1)
}

// publish writes events to topic and returns once Kafka holds them durably.
func (s *Service) publish(ctx context.Context, topic string, evs ...published) error {
	n, err := s.partitions(ctx, topic)
	if err != nil {
		return unavailableErr{fmt.Errorf("topic %s: %w", topic, err)}
	}
	kt := s.kafkaTopic(topic)
	msgs := make([]*sarama.ProducerMessage, 0, len(evs))
	for _, p := range evs {
		msg, err := toRecord(ctx, p, kt, s.partitionOf(p, n))
		if err != nil {
			return badEvent("%v", err)
		}
		msgs = append(msgs, msg)
	}
	return s.produce(ctx, topic, msgs)
}

// produce writes records in order, recreating the topic once if it was
// deleted under the producer's cached metadata.
func (s *Service) produce(ctx context.Context, topic string, msgs []*sarama.ProducerMessage) error {
	err := s.kc.ProduceMessages(ctx, msgs...)
	if errors.Is(err, sarama.ErrUnknownTopicOrPartition) {
		if _, err2 := s.kc.EnsureTopic(ctx, msgs[0].Topic, 1); err2 == nil {
			for _, m := range msgs {
				m.Partition = 0
			}
			err = s.kc.ProduceMessages(ctx, msgs...)
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, sarama.ErrMessageSizeTooLarge):
		return tooLargeErr{fmt.Errorf("event too large for Kafka: %w", err)}
	default:
		return unavailableErr{fmt.Errorf("publish to topic %s: %w", topic, err)}
	}
}

// partitionOf picks the partition of an event: by its partitionkey
// extension (the CloudEvents Kafka binding's key), so one key keeps one
// order; else round robin.
func (s *Service) partitionOf(p published, n int32) int32 {
	if n <= 1 {
		return 0
	}
	if k, ok := p.ev.Extensions()["partitionkey"]; ok {
		h := fnv.New32a()
		fmt.Fprint(h, k)
		return int32(h.Sum32() % uint32(n))
	}
	return int32(s.rr.Add(1) % uint32(n))
}

// startOffsets are where a new group starts reading topic: the newest
// offsets of its partitions, or sarama.OffsetOldest for each when oldest.
func (s *Service) startOffsets(ctx context.Context, topic string, oldest bool) (map[int32]int64, error) {
	n, err := s.partitions(ctx, topic)
	if err != nil {
		return nil, err
	}
	kt := s.kafkaTopic(topic)
	out := make(map[int32]int64, n)
	for p := range n {
		if oldest {
			out[p] = sarama.OffsetOldest
			continue
		}
		off, err := s.kc.GetOffset(kt, p, sarama.OffsetNewest)
		if err != nil {
			return nil, fmt.Errorf("newest offset of %s/%d: %w", kt, p, err)
		}
		out[p] = off
	}
	return out, nil
}

// unavailableErr is a backend failure a retry may fix (503).
type unavailableErr struct{ error }

func (e unavailableErr) Unwrap() error { return e.error }

// tooLargeErr is an event Kafka refuses for its size (413).
type tooLargeErr struct{ error }

func (e tooLargeErr) Unwrap() error { return e.error }

// oneLine keeps log values and error bodies on one line.
func oneLine(s string) string { return httpx.OneLine(s) }
