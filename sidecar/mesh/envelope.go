// Package mesh is kar's transport: it carries requests and responses
// between sidecars over the application's Kafka topic and keeps membership
// in Redis.
//
// Each sidecar claims one partition of the topic through a lease in Redis
// and reads it with a direct partition consumer; there is no consumer group,
// so joins and leaves never stall other members. A caller produces a request
// to the partition of a live sidecar that serves the target; the response
// goes to the caller's partition. A partition's read position is committed
// to Redis only up to the first message not yet finished, so when a sidecar
// dies (its lease expires) or leaves with work unfinished, a live sidecar
// adopts the partition and finishes, forwards or drops what is left: a
// request the mesh accepted is delivered at least once, and nothing re-reads
// history.
package mesh

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
)

// Kinds of envelope.
const (
	KindRequest  = "req"
	KindResponse = "resp"
)

// Envelope is one record on the application's topic: a JSON header line,
// a newline, then the raw body (so tools such as kcat show it readably).
type Envelope struct {
	Kind string `json:"k"`
	ID   string `json:"id"`
	// From is the calling sidecar and FromPart its partition at call time;
	// responses go there.
	From     string `json:"from,omitempty"`
	FromPart int32  `json:"fp"`
	// To is the sidecar the sender chose; a partition's owner serves a
	// request addressed to another sidecar when it can (adoption).
	To string `json:"to,omitempty"`

	// Target of a request: a service, or an actor instance.
	Service   string `json:"svc,omitempty"`
	ActorType string `json:"at,omitempty"`
	ActorID   string `json:"ai,omitempty"`
	Session   string `json:"ses,omitempty"`

	Method string      `json:"m,omitempty"`
	Path   string      `json:"p,omitempty"`
	Query  string      `json:"q,omitempty"`
	Header http.Header `json:"h,omitempty"`
	// Async requests (tell, reminders, events) get no response.
	Async bool `json:"a,omitempty"`
	// Deadline (Unix ms) bounds how long the request may wait for a
	// component of its target to join.
	Deadline int64 `json:"dl,omitempty"`

	// Status of a response; Error marks a response made by the mesh
	// itself (no component, timeout) rather than by the component.
	Status int    `json:"st,omitempty"`
	Error  bool   `json:"err,omitempty"`
	Body   []byte `json:"-"`
}

// Target names what a request is for, for messages and logs.
func (e *Envelope) Target() string {
	if e.ActorType != "" {
		return "actor " + e.ActorType + "/" + e.ActorID
	}
	return "service " + e.Service
}

// Encode renders e as a record value.
func (e *Envelope) Encode() ([]byte, error) {
	head, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(head)+1+len(e.Body))
	out = append(out, head...)
	out = append(out, '\n')
	return append(out, e.Body...), nil
}

// Decode parses a record value made by Encode.
func Decode(b []byte) (*Envelope, error) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return nil, fmt.Errorf("record has no header line")
	}
	e := &Envelope{}
	if err := json.Unmarshal(b[:i], e); err != nil {
		return nil, fmt.Errorf("record header: %w", err)
	}
	if e.Kind != KindRequest && e.Kind != KindResponse {
		return nil, fmt.Errorf("record of unknown kind %q", e.Kind)
	}
	e.Body = b[i+1:]
	return e, nil
}
