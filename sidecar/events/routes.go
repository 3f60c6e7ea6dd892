package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/IBM/sarama"

	"github.com/kar-runtime/kar/adapter/kafka"
)

// Register installs the event routes on mux:
//
//	POST   /kar/v1/event/{topic}/publish        publish one event (KAR API)
//	POST   /kar/v1/event/{topic}/cloudevents    Knative Eventing ingress (kar's extension)
//	PUT    /kar/v1/event/{topic}                create a topic
//	DELETE /kar/v1/event/{topic}                delete a topic
//	GET    /kar/v1/actor/{type}/{id}/events     list an actor's subscriptions
//	DELETE /kar/v1/actor/{type}/{id}/events     cancel them all
//	GET|PUT|DELETE /kar/v1/actor/{type}/{id}/events/{subscriptionId}
//
// Status codes follow the API and KAR 1.3.10; see docs/events.md.
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /kar/v1/event/{topic}/publish", s.handlePublish)
	mux.HandleFunc("POST /kar/v1/event/{topic}/cloudevents", s.handleIngress)
	mux.HandleFunc("PUT /kar/v1/event/{topic}", s.handleCreateTopic)
	mux.HandleFunc("DELETE /kar/v1/event/{topic}", s.handleDeleteTopic)
	const base = "/kar/v1/actor/{type}/{id}/events"
	mux.HandleFunc("GET "+base, s.handleList)
	mux.HandleFunc("DELETE "+base, s.handleCancelAll)
	mux.HandleFunc("GET "+base+"/{subscriptionId}", s.handleGet)
	mux.HandleFunc("PUT "+base+"/{subscriptionId}", s.handleSubscribe)
	mux.HandleFunc("DELETE "+base+"/{subscriptionId}", s.handleCancel)
}

// topicOf reads {topic}; on a name that is not a user's event topic (an
// illegal Kafka name, or one in kar's reserved name space) it has answered 400.
func topicOf(w http.ResponseWriter, r *http.Request) (string, bool) {
	t := r.PathValue("topic")
	if err := kafka.ValidEventTopic(t); err != nil {
		http.Error(w, "bad topic: "+err.Error(), http.StatusBadRequest)
		return "", false
	}
	return t, true
}

func (s *Service) handlePublish(w http.ResponseWriter, r *http.Request) {
	topic, ok := topicOf(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r, s.opts.MaxBodyBytes)
	if !ok {
		return
	}
	p, err := fromPublish(s.opts.App, r.Header, body)
	if err == nil {
		err = s.publish(r.Context(), topic, p)
	}
	if err != nil {
		eventError(w, "publish to topic "+strconv.Quote(topic), err)
		return
	}
	writeText(w, http.StatusOK, "OK")
}

// handleIngress takes CloudEvents as Knative Eventing delivers them (binary,
// structured or batch mode) and answers 202 once all are in Kafka: a 2xx
// means delivered to Knative, which retries on 429 and 5xx and does not on
// other 4xx (a malformed event stays malformed).
func (s *Service) handleIngress(w http.ResponseWriter, r *http.Request) {
	topic, ok := topicOf(w, r)
	if !ok {
		return
	}
	select {
	case s.ingress <- struct{}{}:
		defer func() { <-s.ingress }()
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, "too many events in flight; retry later", http.StatusTooManyRequests)
		return
	}
	body, ok := readBody(w, r, s.opts.MaxBodyBytes)
	if !ok {
		return
	}
	var evs []published
	if mediaType(r.Header.Get("Content-Type")) == contentTypeBatch {
		batch, err := decodeBatch(body)
		if err != nil {
			eventError(w, "accept the batch", err)
			return
		}
		for i := range batch {
			evs = append(evs, published{ev: &batch[i]})
		}
	} else {
		ev, err := decodeHTTP(r.Header, body)
		if err != nil {
			eventError(w, "accept the event", err)
			return
		}
		evs = append(evs, published{ev: ev})
	}
	if len(evs) > 0 {
		if err := s.publish(r.Context(), topic, evs...); err != nil {
			eventError(w, "publish to topic "+strconv.Quote(topic), err)
			return
		}
	}
	w.WriteHeader(http.StatusAccepted)
}

// topicCreateOptions is the body of PUT /kar/v1/event/{topic}; member names
// match case-insensitively (kar-sdk sends numPartitions, KAR's Go struct
// numpartitions).
type topicCreateOptions struct {
	NumPartitions     int32              `json:"numPartitions"`
	ReplicationFactor int16              `json:"replicationFactor"`
	ConfigEntries     map[string]*string `json:"configEntries"`
}

func (s *Service) handleCreateTopic(w http.ResponseWriter, r *http.Request) {
	topic, ok := topicOf(w, r)
	if !ok {
		return
	}
	body, ok := readBody(w, r, 64<<10)
	if !ok {
		return
	}
	var o topicCreateOptions
	if b := bytes.TrimSpace(body); len(b) > 0 {
		if err := json.Unmarshal(b, &o); err != nil {
			http.Error(w, fmt.Sprintf(`request body is not topic options {"numPartitions": 1, "replicationFactor": 3, "configEntries": {"retention.ms": "86400000"}}: %v`, err), http.StatusBadRequest)
			return
		}
	}
	if o.NumPartitions < 0 || o.ReplicationFactor < 0 {
		http.Error(w, `"numPartitions" and "replicationFactor" must be positive (or absent for the defaults)`, http.StatusBadRequest)
		return
	}
	created, err := s.createTopic(r.Context(), topic, kafka.TopicOptions{
		NumPartitions: o.NumPartitions, ReplicationFactor: o.ReplicationFactor, ConfigEntries: o.ConfigEntries})
	switch {
	case err != nil && rejectedOptions(err):
		http.Error(w, fmt.Sprintf("Kafka refused the options of topic %q: %s", topic, oneLine(err.Error())), http.StatusBadRequest)
	case err != nil:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("cannot create topic %q: %s", topic, oneLine(err.Error())), http.StatusServiceUnavailable)
	case created:
		w.Header().Set("Location", "/kar/v1/event/"+topic)
		w.WriteHeader(http.StatusCreated)
	default:
		writeText(w, http.StatusOK, "Already existed")
	}
}

func (s *Service) handleDeleteTopic(w http.ResponseWriter, r *http.Request) {
	topic, ok := topicOf(w, r)
	if !ok {
		return
	}
	if err := s.kc.DeleteTopics(s.kafkaTopic(topic)); err != nil {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("cannot delete topic %q: %s", topic, oneLine(err.Error())), http.StatusServiceUnavailable)
		return
	}
	writeText(w, http.StatusOK, "OK")
}

func actorOf(r *http.Request) Actor {
	return Actor{Type: r.PathValue("type"), ID: r.PathValue("id")}
}

func describe(r *http.Request) string {
	s := "subscriptions of actor " + r.PathValue("type") + "/" + r.PathValue("id")
	if id := r.PathValue("subscriptionId"); id != "" {
		s = "subscription " + strconv.Quote(id) + " of actor " + r.PathValue("type") + "/" + r.PathValue("id")
	}
	return s
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	subs, _, err := s.list(r.Context(), actorOf(r))
	if err != nil {
		storeError(w, "list "+describe(r), err)
		return
	}
	if subs == nil {
		subs = []Subscription{}
	}
	b, err := json.Marshal(subs)
	if err != nil {
		http.Error(w, fmt.Sprintf("cannot encode %s: %v", describe(r), err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, b)
}

func (s *Service) handleCancelAll(w http.ResponseWriter, r *http.Request) {
	_, fields, err := s.list(r.Context(), actorOf(r))
	if err != nil {
		storeError(w, "cancel "+describe(r), err)
		return
	}
	n, err := s.remove(r.Context(), fields)
	if err != nil {
		storeError(w, "cancel "+describe(r), err)
		return
	}
	writeText(w, http.StatusOK, strconv.Itoa(n))
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	noa, ok := nilOnAbsent(w, r)
	if !ok {
		return
	}
	a := actorOf(r)
	_, raw, err := s.get(r.Context(), field(a.Type, a.ID, r.PathValue("subscriptionId")))
	switch {
	case errors.Is(err, errNotFound) && noa:
		writeJSON(w, []byte("null"))
	case errors.Is(err, errNotFound):
		http.Error(w, "Not Found", http.StatusNotFound)
	case err != nil:
		storeError(w, "read "+describe(r), err)
	default:
		writeJSON(w, []byte(raw))
	}
}

func (s *Service) handleSubscribe(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, 64<<10)
	if !ok {
		return
	}
	sub, err := parseSubscribe(actorOf(r), r.PathValue("subscriptionId"), body)
	if err != nil {
		http.Error(w, fmt.Sprintf("cannot subscribe %s: %v", describe(r), err), http.StatusBadRequest)
		return
	}
	old, _, err := s.get(r.Context(), sub.field())
	if err != nil && !errors.Is(err, errNotFound) {
		storeError(w, "read "+describe(r), err)
		return
	}
	// A new subscription (or one moved to another topic or group) joins
	// its group where the group is; a group it starts begins at the topic's
	// newest offsets, unless it asks for the oldest: the events it receives
	// are those published after this PUT returned.
	notFound := errors.Is(err, errNotFound)
	moved := notFound || old.unit() != sub.unit()
	var start map[int32]int64
	if moved {
		start, err = s.startOffsets(r.Context(), sub.Topic, sub.OffsetOldest)
		if err != nil {
			w.Header().Set("Retry-After", "1")
			http.Error(w, fmt.Sprintf("cannot subscribe %s to topic %q now (Kafka): %s; retry later", describe(r), sub.Topic, oneLine(err.Error())), http.StatusServiceUnavailable)
			return
		}
	}
	oldUnit := ""
	if !notFound {
		oldUnit = old.unit()
	}
	created, err := s.put(r.Context(), sub, start, moved, oldUnit)
	switch {
	case err != nil:
		storeError(w, "store "+describe(r), err)
	// KAR 1.3.10's answers (its spec lists 201 and 204; its code answers
	// 204 to a new subscription and 200 "OK" to a replaced one), text/plain
	// both: KAR's Python SDK hands an app the text of a text/plain answer
	// but the raw response (which it cannot serialise) when there is no
	// Content-Type, and kar-sdk returns undefined and "OK" as with KAR.
	case created:
		writeText(w, http.StatusNoContent, "")
	default:
		writeText(w, http.StatusOK, "OK")
	}
}

func (s *Service) handleCancel(w http.ResponseWriter, r *http.Request) {
	noa, ok := nilOnAbsent(w, r)
	if !ok {
		return
	}
	a := actorOf(r)
	n, err := s.remove(r.Context(), []string{field(a.Type, a.ID, r.PathValue("subscriptionId"))})
	switch {
	case err != nil:
		storeError(w, "cancel "+describe(r), err)
	case n == 0 && noa:
		writeText(w, http.StatusOK, "0")
	case n == 0:
		http.Error(w, "Not Found", http.StatusNotFound)
	default:
		writeText(w, http.StatusOK, "1")
	}
}

// rejectedOptions tells topic options Kafka refuses (a client error) from
// Kafka being unavailable.
func rejectedOptions(err error) bool {
	for _, e := range []error{sarama.ErrInvalidReplicationFactor, sarama.ErrInvalidPartitions, sarama.ErrInvalidConfig,
		sarama.ErrInvalidTopic, sarama.ErrPolicyViolation, sarama.ErrInvalidReplicaAssignment} {
		if errors.Is(err, e) {
			return true
		}
	}
	var te *sarama.TopicError
	return errors.As(err, &te) && te.Err != sarama.ErrNoError && te.Err != sarama.ErrRequestTimedOut && te.Err != sarama.ErrNotController
}
