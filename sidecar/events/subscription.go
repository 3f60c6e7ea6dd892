package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/url"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/httpx"
)

// Actor names an actor instance.
type Actor struct {
	Type string `json:"Type"`
	ID   string `json:"ID"`
}

// Subscription is one subscription as the API shows it (the swagger
// "source" object), plus kar's sink extension: a subscription with a Sink
// delivers to that URL as CloudEvents over HTTP instead of to the actor.
type Subscription struct {
	Actor Actor  `json:"actor"`
	ID    string `json:"id"`
	// Path is the actor method ("/name") each event is delivered to.
	Path  string `json:"path,omitempty"`
	Topic string `json:"topic"`
	// Group load-balances as a Kafka consumer group did in KAR: the
	// subscriptions of one topic with the same group share its events
	// (each event goes to one of them); empty means the subscription id.
	// See group.go.
	Group string `json:"group"`
	// ContentType selects what the method receives (see deliveryArg);
	// empty is the default.
	ContentType  string `json:"contenttype,omitempty"`
	OffsetOldest bool   `json:"oldestoffset"`

	// Sink is an http(s) URL receiving each event as a CloudEvent (binary mode).
	Sink string `json:"sink,omitempty"`
	// DeadLetterSink receives the events the sink rejected (4xx) or that
	// exhausted Retry; without one they are logged and skipped.
	DeadLetterSink string `json:"deadLetterSink,omitempty"`
	// Retry is how many times a failed sink delivery is retried (nil: forever).
	Retry *int `json:"retry,omitempty"`
}

// subscribePayload is the body of PUT .../events/{subscriptionId}
// (EventSubscribeOptions). JSON member names match case-insensitively, so
// "contentType" (kar-sdk) and "contenttype" (KAR's Go struct) both work.
type subscribePayload struct {
	Path           string   `json:"path"`
	Topic          string   `json:"topic"`
	ContentType    string   `json:"contentType"`
	Group          string   `json:"group"`
	OldestOffset   flexBool `json:"oldestOffset"`
	OffsetOldest   flexBool `json:"offsetOldest"`
	Sink           string   `json:"sink"`
	DeadLetterSink string   `json:"deadLetterSink"`
	Retry          *int     `json:"retry"`
}

// flexBool accepts true/false and "true"/"false" (KAR stored the option as a string).
type flexBool bool

func (b *flexBool) UnmarshalJSON(p []byte) error {
	s := strings.Trim(string(p), `"`)
	if s == "" || s == "null" {
		*b = false
		return nil
	}
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("want true or false, not %s", p)
	}
	*b = flexBool(v)
	return nil
}

// parseSubscribe turns a PUT body into a Subscription. Errors say what to fix.
func parseSubscribe(actor Actor, id string, body []byte) (Subscription, error) {
	const shape = `{"path": "/method", "topic": "name", "contentType": "application/json"}`
	if len(bytes.TrimSpace(body)) == 0 {
		return Subscription{}, fmt.Errorf("request body is empty: send %s", shape)
	}
	var p subscribePayload
	if err := json.Unmarshal(body, &p); err != nil {
		return Subscription{}, fmt.Errorf("request body is not a subscription %s: %w", shape, err)
	}
	s := Subscription{Actor: actor, ID: id, Path: p.Path, Topic: p.Topic, Group: p.Group,
		ContentType: p.ContentType, OffsetOldest: bool(p.OldestOffset || p.OffsetOldest),
		Sink: p.Sink, DeadLetterSink: p.DeadLetterSink, Retry: p.Retry}
	if s.Topic == "" {
		return Subscription{}, errors.New(`"topic" is missing: name the topic to subscribe to`)
	}
	if err := kafka.ValidEventTopic(s.Topic); err != nil {
		return Subscription{}, fmt.Errorf(`"topic": %w`, err)
	}
	if s.Sink == "" && s.Path == "" {
		return Subscription{}, errors.New(`"path" is missing: name the actor method that receives the events, e.g. "/onEvent" (or give a "sink" URL)`)
	}
	if s.Path != "" && !strings.HasPrefix(s.Path, "/") {
		s.Path = "/" + s.Path
	}
	if s.Path != "" {
		if err := httpx.CheckMethodPath(s.Path); err != nil {
			return Subscription{}, fmt.Errorf(`"path": %w`, err)
		}
	}
	if s.ContentType != "" {
		if _, _, err := mime.ParseMediaType(s.ContentType); err != nil {
			return Subscription{}, fmt.Errorf(`"contentType" %q is not a media type such as application/json: %v`, s.ContentType, err)
		}
	}
	for name, u := range map[string]string{"sink": s.Sink, "deadLetterSink": s.DeadLetterSink} {
		if u == "" {
			continue
		}
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return Subscription{}, fmt.Errorf(`%q %q is not an absolute http(s) URL such as http://broker-ingress.knative-eventing.svc/ns/default`, name, u)
		}
	}
	if s.Retry != nil && *s.Retry < 0 {
		return Subscription{}, fmt.Errorf(`"retry" %d is negative: give how many times to retry, or leave it out to retry forever`, *s.Retry)
	}
	return s, nil
}

// field is the subscription's field in the Subscriptions hash
// ("type/id/subscriptionId", each part path-escaped so that a "/" inside
// one cannot make two subscriptions collide).
func field(actorType, actorID, id string) string {
	return instancePrefix(actorType, actorID) + url.PathEscape(id)
}

func instancePrefix(actorType, actorID string) string {
	return url.PathEscape(actorType) + "/" + url.PathEscape(actorID) + "/"
}

func (s Subscription) field() string { return field(s.Actor.Type, s.Actor.ID, s.ID) }

// The subscriptions' Redis keys come from the key scheme (adapter/store).
// A group's hash and lease are named by its unit name ("topic/group", two
// path-escaped parts); the per-subscription offsets and lease of kar before
// groups, named by the subscription's field (three parts), are only read
// to adopt such a subscription and deleted with it.
func groupKey(k store.Keys, unit string) string      { return k.SubscriptionOffsets(unit) }
func groupLeaseKey(k store.Keys, unit string) string { return k.SubscriptionLease(unit) }
func legacyOffsetsKey(k store.Keys, field string) string {
	return k.SubscriptionOffsets(field)
}
func legacyLeaseKey(k store.Keys, field string) string { return k.SubscriptionLease(field) }
func runnersKey(k store.Keys) string                   { return k.SubscriptionRunners() }
func wakeChannel(k store.Keys) string                  { return k.SubscriptionWake() }

// errNotFound reports a subscription that does not exist.
var errNotFound = errors.New("subscription not found")

// get returns one subscription and its stored JSON.
func (s *Service) get(ctx context.Context, f string) (Subscription, string, error) {
	v, err := s.rdb.HGet(ctx, s.keys.Subscriptions(), f).Result()
	if errors.Is(err, redis.Nil) {
		return Subscription{}, "", errNotFound
	}
	if err != nil {
		return Subscription{}, "", fmt.Errorf("read subscription %s: %w", f, err)
	}
	var sub Subscription
	if err := json.Unmarshal([]byte(v), &sub); err != nil {
		return Subscription{}, "", fmt.Errorf("subscription %s is stored corrupt: %w", f, err)
	}
	return sub, v, nil
}

// put stores sub and makes it a member of its group. A group without
// members starts at start (partition → offset; sarama.OffsetOldest for the
// oldest), a group with members keeps its position; moved says sub is new
// or changed topic or group (old: its previous unit name, if any).
func (s *Service) put(ctx context.Context, sub Subscription, start map[int32]int64, moved bool, old string) (created bool, err error) {
	b, err := json.Marshal(sub)
	if err != nil {
		return false, fmt.Errorf("encode subscription: %w", err)
	}
	f, unit := sub.field(), sub.unit()
	if old == "" {
		old = unit
	}
	args := make([]any, 0, 3+2*len(start))
	args = append(args, f, b, moved)
	for part, off := range start {
		args = append(args, strconv.Itoa(int(part)), off)
	}
	n, err := putScript.Run(ctx, s.rdb, []string{s.keys.Subscriptions(), groupKey(s.keys, unit), groupKey(s.keys, old),
		groupLeaseKey(s.keys, old), legacyOffsetsKey(s.keys, f), legacyLeaseKey(s.keys, f)}, args...).Int()
	if err != nil {
		return false, fmt.Errorf("store subscription %s: %w", f, err)
	}
	s.notify(ctx)
	return n == 1, nil
}

// list returns the subscriptions of one actor instance, by id.
func (s *Service) list(ctx context.Context, actor Actor) ([]Subscription, []string, error) {
	prefix := instancePrefix(actor.Type, actor.ID)
	var out []Subscription
	var fields []string
	var cursor uint64
	for {
		kv, next, err := s.rdb.HScan(ctx, s.keys.Subscriptions(), cursor, globEscape(prefix)+"*", 1000).Result()
		if err != nil {
			return nil, nil, fmt.Errorf("list subscriptions of %s/%s: %w", actor.Type, actor.ID, err)
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if !strings.HasPrefix(kv[i], prefix) {
				continue
			}
			var sub Subscription
			if err := json.Unmarshal([]byte(kv[i+1]), &sub); err != nil {
				return nil, nil, fmt.Errorf("subscription %s is stored corrupt: %w", kv[i], err)
			}
			out = append(out, sub)
			fields = append(fields, kv[i])
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	sort.Strings(fields)
	return out, fields, nil
}

// remove deletes subscriptions, leaves their groups (a group left without
// members goes with its position and lease) and deletes what kar before
// groups kept per subscription. A runner delivering one of the groups sees
// the change at its next commit or lease renewal (announced at once).
func (s *Service) remove(ctx context.Context, fields []string) (int, error) {
	removed := 0
	for len(fields) > 0 {
		batch := fields[:min(len(fields), 256)]
		fields = fields[len(batch):]
		for attempt := 0; ; attempt++ {
			n, err := s.removeBatch(ctx, batch)
			if err == nil {
				removed += n
				break
			}
			if !errors.Is(err, errChanged) || attempt >= 10 {
				return removed, err
			}
		}
	}
	if removed > 0 {
		s.notify(ctx)
	}
	return removed, nil
}

// errChanged: a subscription changed between reading and removing it.
var errChanged = errors.New("subscription changed while being removed")

func (s *Service) removeBatch(ctx context.Context, fields []string) (int, error) {
	raws, err := s.rdb.HMGet(ctx, s.keys.Subscriptions(), fields...).Result()
	if err != nil {
		return 0, err
	}
	keys := []string{s.keys.Subscriptions()}
	args := make([]any, 0, 2*len(fields))
	for i, f := range fields {
		raw, _ := raws[i].(string)
		// The unit of a subscription stored corrupt is unknown: only its
		// own keys go.
		unit := f
		var sub Subscription
		if raw != "" && json.Unmarshal([]byte(raw), &sub) == nil {
			unit = sub.unit()
		}
		keys = append(keys, groupKey(s.keys, unit), groupLeaseKey(s.keys, unit), legacyOffsetsKey(s.keys, f), legacyLeaseKey(s.keys, f))
		args = append(args, f, raw)
	}
	n, err := removeScript.Run(ctx, s.rdb, keys, args...).Int()
	switch {
	case err != nil:
		return 0, err
	case n < 0:
		return 0, errChanged
	}
	return n, nil
}

// notify wakes the runners; a lost notice only delays them by Options.Poll.
func (s *Service) notify(ctx context.Context) {
	select {
	case s.wake <- struct{}{}:
	default:
	}
	if err := s.rdb.Publish(ctx, wakeChannel(s.keys), "").Err(); err != nil {
		s.log.Debug("events: cannot announce a subscription change", "err", err)
	}
}

// globEscape quotes the characters Redis MATCH patterns treat specially.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		switch c {
		case '*', '?', '[', ']', '\\', '^', '-':
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}
