package events

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/google/uuid"
)

const (
	// ContentTypeCloudEvents is a subscription's content type asking for the
	// whole event in structured mode.
	ContentTypeCloudEvents = "application/cloudevents+json"
	contentTypeBatch       = "application/cloudevents-batch+json"

	// EventType is the type of the CloudEvents kar wraps plain bodies in.
	EventType = "kar.event"

	// wrappedHeader marks a Kafka record whose event kar made around a
	// plain published body, so that a subscription with the default
	// content type receives the body as it was published, as with KAR
	// 1.3.10. It is not a ce_ header: it is no part of the event.
	wrappedHeader = "kar_wrapped"
)

// Source is the source attribute of the events kar wraps for app.
func Source(app string) string { return "kar://" + app }

// errBadEvent is a client error (400) about the event itself.
type errBadEvent struct{ err error }

func (e errBadEvent) Error() string { return e.err.Error() }
func (e errBadEvent) Unwrap() error { return e.err }

func badEvent(format string, args ...any) error { return errBadEvent{fmt.Errorf(format, args...)} }

// published is an event ready for Kafka.
type published struct {
	ev      *ce.Event
	wrapped bool
}

// fromPublish turns the body of POST /kar/v1/event/{topic}/publish into an
// event: a CloudEvent sent in binary mode (ce-* headers) or structured mode
// (application/cloudevents+json, or a JSON object with "specversion" and no
// content type, as kar-sdk sends a CloudEvent object) is kept as it is; any
// other body becomes the data of a new CloudEvent 1.0. The event gets the
// publisher's trace context (trace.go).
func fromPublish(app string, h http.Header, body []byte) (p published, err error) {
	defer func() {
		if err == nil {
			addTraceContext(p.ev, h)
		}
	}()
	if h.Get("Ce-Specversion") != "" || mediaType(h.Get("Content-Type")) == ContentTypeCloudEvents {
		ev, err := decodeHTTP(h, body)
		return published{ev: ev}, err
	}
	ct := h.Get("Content-Type")
	mt := mediaType(ct)
	if mt == contentTypeBatch {
		return published{}, badEvent("publish takes one event; POST a batch (%s) to /kar/v1/event/{topic}/cloudevents", contentTypeBatch)
	}
	if (mt == "" || mt == "application/json") && looksLikeCloudEvent(body) {
		hh := http.Header{"Content-Type": {ContentTypeCloudEvents}}
		ev, err := decodeHTTP(hh, body)
		if err != nil {
			return published{}, badEvent("the body has a \"specversion\" but is not a valid CloudEvent: %v (send a plain body with another content type to have it wrapped)", err)
		}
		return published{ev: ev}, nil
	}
	if mt == "" {
		switch {
		case len(body) > 0 && json.Valid(body):
			ct = "application/json"
		case utf8.Valid(body):
			ct = "text/plain; charset=utf-8"
		default:
			ct = "application/octet-stream"
		}
	} else if isJSONType(mt) && len(body) > 0 && !json.Valid(body) {
		return published{}, badEvent("the body is not valid JSON although Content-Type is %q: fix the JSON or send another content type", ct)
	}
	ev := ce.New(ce.CloudEventsVersionV1)
	ev.SetID(uuid.NewString())
	ev.SetSource(Source(app))
	ev.SetType(EventType)
	ev.SetTime(time.Now().UTC())
	ev.SetDataContentType(ct)
	if len(body) > 0 {
		ev.DataEncoded = body
		ev.DataBase64 = !isJSONType(mediaType(ct)) && !utf8.Valid(body)
	}
	return published{ev: &ev, wrapped: true}, nil
}

// looksLikeCloudEvent tells a JSON object with a "specversion" member.
func looksLikeCloudEvent(body []byte) bool {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' || !bytes.Contains(b, []byte(`"specversion"`)) {
		return false
	}
	var probe struct {
		SpecVersion *json.RawMessage `json:"specversion"`
	}
	return json.Unmarshal(b, &probe) == nil && probe.SpecVersion != nil
}

// decodeHTTP reads one CloudEvent in binary or structured mode
// (binding.go) and checks its required attributes.
func decodeHTTP(h http.Header, body []byte) (*ce.Event, error) {
	ev, err := readHTTP(h, body)
	var unsupported versionError
	switch {
	case errors.Is(err, errNoEvent):
		return nil, badEvent("not a CloudEvent: send ce-* headers (binary mode) or Content-Type %s", ContentTypeCloudEvents)
	case errors.As(err, &unsupported):
		return nil, badEvent("%w", err)
	case err != nil:
		return nil, badEvent("not a valid CloudEvent: %w", err)
	}
	if err := ev.Validate(); err != nil {
		return nil, badEvent("not a valid CloudEvent: %w", err)
	}
	return ev, nil
}

// decodeBatch reads a batch (application/cloudevents-batch+json).
func decodeBatch(body []byte) ([]ce.Event, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, badEvent("a CloudEvents batch must be a JSON array of events: %v", err)
	}
	out := make([]ce.Event, 0, len(raw))
	for i, r := range raw {
		var ev ce.Event
		if err := format.JSON.Unmarshal(r, &ev); err != nil {
			return nil, badEvent("event %d of the batch is not a CloudEvent: %v", i, err)
		}
		if err := ev.Validate(); err != nil {
			return nil, badEvent("event %d of the batch is not valid: %v", i, err)
		}
		out = append(out, ev)
	}
	return out, nil
}

// toRecord writes p into a Kafka record in binary mode (binding.go): ce_*
// headers, the data as the value (what Knative's KafkaSource and kcat
// read).
func toRecord(_ context.Context, p published, topic string, partition int32) (*sarama.ProducerMessage, error) {
	msg := &sarama.ProducerMessage{Topic: topic, Partition: partition}
	if err := writeRecord(p.ev, msg); err != nil {
		return nil, fmt.Errorf("encode the event for Kafka: %w", err)
	}
	if p.wrapped {
		msg.Headers = append(msg.Headers, sarama.RecordHeader{Key: []byte(wrappedHeader), Value: []byte("1")})
	}
	return msg, nil
}

// fromRecord reads a record kar (or any CloudEvents Kafka producer) wrote.
// A record without CloudEvents headers (written by a plain Kafka client),
// or of a CloudEvents version kar does not read, becomes a wrapped event
// around its value.
func fromRecord(app string, m *sarama.ConsumerMessage) (published, error) {
	var ct string
	wrapped := false
	for _, h := range m.Headers {
		switch strings.ToLower(string(h.Key)) {
		case kafkaContentType:
			ct = string(h.Value)
		case wrappedHeader:
			wrapped = true
		}
	}
	ev, err := readRecord(m.Headers, m.Value)
	var unsupported versionError
	switch {
	case errors.Is(err, errNoEvent) || errors.As(err, &unsupported):
		return wrapRecord(app, m, ct), nil
	case err != nil:
		return published{}, err
	}
	return published{ev: ev, wrapped: wrapped}, nil
}

// wrapRecord is a new CloudEvent 1.0 around the value of record m, whose
// content-type header is ct.
func wrapRecord(app string, m *sarama.ConsumerMessage, ct string) published {
	ev := ce.New(ce.CloudEventsVersionV1)
	ev.SetID(fmt.Sprintf("%s-%d-%d", m.Topic, m.Partition, m.Offset))
	ev.SetSource(Source(app))
	ev.SetType(EventType)
	if !m.Timestamp.IsZero() {
		ev.SetTime(m.Timestamp.UTC())
	}
	if ct == "" {
		ct = "application/octet-stream"
		if json.Valid(m.Value) {
			ct = "application/json"
		}
	}
	ev.SetDataContentType(ct)
	if len(m.Value) > 0 {
		ev.DataEncoded = m.Value
	}
	return published{ev: &ev, wrapped: true}
}

// structured is the event in JSON structured mode; data that is neither
// JSON nor UTF-8 text is carried as data_base64.
func structured(ev *ce.Event) ([]byte, error) {
	e := ev.Clone()
	if len(e.DataEncoded) > 0 && !isJSONType(mediaType(e.DataContentType())) {
		e.DataBase64 = !utf8.Valid(e.DataEncoded)
	}
	return json.Marshal(e)
}

// deliveryArg is the JSON value an actor method receives for event p under
// a subscription's content type:
//   - "" (default): as published, like KAR 1.3.10: the structured event if a
//     CloudEvent was published, else the body that was published;
//   - application/cloudevents+json: the structured event;
//   - anything else: the event's data.
//
// Data is passed as JSON when it is JSON, else as a JSON string (the text,
// or base64 when it is not UTF-8).
func deliveryArg(p published, contentType string) (json.RawMessage, error) {
	mt := mediaType(contentType)
	if mt == ContentTypeCloudEvents || (mt == "" && !p.wrapped) {
		return structured(p.ev)
	}
	data := p.ev.Data()
	if len(data) == 0 {
		return json.RawMessage("null"), nil
	}
	if json.Valid(data) && (isJSONType(mediaType(p.ev.DataContentType())) || p.ev.DataContentType() == "") {
		return json.RawMessage(data), nil
	}
	var s string
	if utf8.Valid(data) {
		s = string(data)
	} else {
		s = base64.StdEncoding.EncodeToString(data)
	}
	return json.Marshal(s)
}

// actorArgs is the body of the actor call that delivers an event: the JSON
// array of the method's arguments, [event].
func actorArgs(arg json.RawMessage) []byte {
	b := make([]byte, 0, len(arg)+2)
	b = append(b, '[')
	b = append(b, arg...)
	return append(b, ']')
}

// mediaType is the lower-case media type of a Content-Type, without parameters.
func mediaType(ct string) string {
	if ct == "" {
		return ""
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(strings.SplitN(ct, ";", 2)[0]))
	}
	return mt
}

func isJSONType(mt string) bool {
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}
