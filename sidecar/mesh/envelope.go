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
//
// One mechanism per file:
//
//	mesh.go       the member's life: New, Join, Announce, Withdraw, Leave
//	lease.go      claiming and renewing partition leases, losing one
//	partition.go  reading an owned partition, dispatching its records, committing positions
//	adopt.go      adopting the partitions of dead sidecars, releasing them when drained
//	members.go    the registry of live sidecars and the view routed on
//	route.go      choosing a target sidecar and producing to its partition
//	held.go       requests waiting for a component of their target to join
//	serve.go      delivering a request to this sidecar's component
//	calls.go      calls, tells, promises and their responses
//	actors.go     actor placement, instance locks, activation
//	envelope.go   the record format
package mesh

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// Kinds of envelope.
const (
	KindRequest  = "req"
	KindResponse = "resp"
	// kindFailed is never sent: failCall ends a call with it.
	kindFailed = "failed"
)

// Envelope is one record on the application's topic (see Encode for the
// wire format).
type Envelope struct {
	Kind string
	// App is the application that wrote the record: a sidecar acts only
	// on its own application's records.
	App string
	ID  string
	// From is the calling sidecar and FromPart its partition at call time;
	// responses go there.
	From     string
	FromPart int32
	// To is the sidecar the sender chose; a partition's owner serves a
	// request addressed to another sidecar when it can (adoption).
	To string

	// Target of a request: a service, or an actor instance.
	Service   string
	ActorType string
	ActorID   string
	Session   string
	// Parent is the request whose run made this synchronous call, if
	// known (orchestrate.go).
	Parent string

	Method string
	Path   string
	Query  string
	Header httpx.Fields
	// Async requests (tell, reminders, events) get no response.
	Async bool
	// MayRepeat marks a request passed on by a sidecar other than its
	// sender (adoption, hand-over): it may have run already, so its host
	// checks for a recorded result before running it.
	MayRepeat bool
	// ActorResult marks a service step of a tail call that an actor
	// method began: the caller made an actor call, so the service's answer
	// reaches it as an actor result (see actorResult).
	ActorResult bool
	// Deadline (Unix ms) bounds how long the request may wait for a
	// component of its target to join.
	Deadline int64

	// Status of a response; Error marks a response made by the mesh
	// itself (no component, timeout) rather than by the component.
	Status int
	Error  bool
	Body   []byte

	// Set on tail-call steps on the host, never sent: the step may run
	// on the instance the previous step holds.
	releaseLock bool
	holdsLock   bool
	// failure is why Kafka refused a call's request (Kind kindFailed, on
	// the call's channel only; failCall).
	failure error
}

// Target names what a request is for, for messages and logs.
func (e *Envelope) Target() string {
	if e.ActorType != "" {
		return "actor " + e.ActorType + "/" + e.ActorID
	}
	return "service " + e.Service
}

// TargetName is the service or actor type a request is for.
func (e *Envelope) TargetName() string {
	if e.ActorType != "" {
		return e.ActorType
	}
	return e.Service
}

// The wire format is binary, not JSON: every call crosses it four times
// (encode and decode of request and response) and encoding/json with a
// header map was the largest CPU cost of a sidecar under load.
//
//	'K' version kind flags | FromPart int32 | Deadline int64 | Status uint16
//	App ID From To Service ActorType ActorID Session Parent Method Path Query (uvarint length + bytes)
//	header: uvarint n, then n × (key, uvarint m, m × value)
//	body: the rest of the record
const (
	wireMagic   = 'K'
	wireVersion = 2
	flagAsync   = 1
	flagError   = 2
	flagRepeat  = 4
	flagActor   = 8
)

// Encode renders e as a record value.
func (e *Envelope) Encode() ([]byte, error) { return e.AppendEncoded(nil) }

// AppendEncoded renders e as a record value appended to b, which it grows
// once to the size needed.
func (e *Envelope) AppendEncoded(b []byte) ([]byte, error) {
	var kind byte
	switch e.Kind {
	case KindRequest:
		kind = 1
	case KindResponse:
		kind = 2
	default:
		return nil, fmt.Errorf("envelope of unknown kind %q", e.Kind)
	}
	var flags byte
	if e.Async {
		flags |= flagAsync
	}
	if e.Error {
		flags |= flagError
	}
	if e.MayRepeat {
		flags |= flagRepeat
	}
	if e.ActorResult {
		flags |= flagActor
	}
	strs := [...]string{e.App, e.ID, e.From, e.To, e.Service, e.ActorType, e.ActorID, e.Session, e.Parent, e.Method, e.Path, e.Query}
	size := 18 + len(e.Body) + binary.MaxVarintLen32
	for _, s := range strs {
		size += len(s) + binary.MaxVarintLen32
	}
	for _, f := range e.Header {
		size += len(f) + 2*binary.MaxVarintLen32
	}
	b = slices.Grow(b, size)
	b = append(b, wireMagic, wireVersion, kind, flags)
	b = binary.BigEndian.AppendUint32(b, uint32(e.FromPart))
	b = binary.BigEndian.AppendUint64(b, uint64(e.Deadline))
	b = binary.BigEndian.AppendUint16(b, uint16(e.Status))
	for _, s := range strs {
		b = appendString(b, s)
	}
	return append(appendHeader(b, e.Header), e.Body...), nil
}

// appendHeader writes h as the wire format has it since it carried an
// http.Header: the number of names, then each name once with the number
// of its values and the values, so that every kar reads it.
func appendHeader(b []byte, h httpx.Fields) []byte {
	names := 0
	for i := 0; i+1 < len(h); i += 2 {
		if firstOf(h, i) {
			names++
		}
	}
	b = binary.AppendUvarint(b, uint64(names))
	for i := 0; i+1 < len(h); i += 2 {
		if !firstOf(h, i) {
			continue
		}
		n := 0
		for j := i; j+1 < len(h); j += 2 {
			if h[j] == h[i] {
				n++
			}
		}
		b = appendString(b, h[i])
		b = binary.AppendUvarint(b, uint64(n))
		for j := i; j+1 < len(h); j += 2 {
			if h[j] == h[i] {
				b = appendString(b, h[j+1])
			}
		}
	}
	return b
}

// firstOf reports whether the name at i is its first in h.
func firstOf(h httpx.Fields, i int) bool {
	for j := 0; j+1 < i; j += 2 {
		if h[j] == h[i] {
			return false
		}
	}
	return true
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// errBadRecord is returned for records not written by Encode.
var errBadRecord = errors.New("not a kar message")

// Decode parses a record value made by Encode. The body aliases b.
func Decode(b []byte) (*Envelope, error) {
	if len(b) < 18 || b[0] != wireMagic {
		return nil, errBadRecord
	}
	if b[1] != wireVersion {
		return nil, fmt.Errorf("kar message of wire version %d (this kar reads %d)", b[1], wireVersion)
	}
	e := &Envelope{}
	switch b[2] {
	case 1:
		e.Kind = KindRequest
	case 2:
		e.Kind = KindResponse
	default:
		return nil, errBadRecord
	}
	e.Async = b[3]&flagAsync != 0
	e.Error = b[3]&flagError != 0
	e.MayRepeat = b[3]&flagRepeat != 0
	e.ActorResult = b[3]&flagActor != 0
	e.FromPart = int32(binary.BigEndian.Uint32(b[4:]))
	e.Deadline = int64(binary.BigEndian.Uint64(b[8:]))
	e.Status = int(binary.BigEndian.Uint16(b[16:]))
	// The strings (names and headers) are read out of one string made of
	// their part of the record: one allocation rather than one each.
	end, values, err := stringsEnd(b)
	if err != nil {
		return nil, err
	}
	r := reader{b: b, s: string(b[18:end]), base: 18, i: 18}
	for _, p := range [...]*string{&e.App, &e.ID, &e.From, &e.To, &e.Service, &e.ActorType, &e.ActorID, &e.Session, &e.Parent, &e.Method, &e.Path, &e.Query} {
		*p = r.str()
	}
	if n := r.uvarint(); n > 0 && r.err == nil {
		// One slice, capped so that adding a field copies it.
		h := make(httpx.Fields, 0, 2*values)
		for i := uint64(0); i < n && r.err == nil; i++ {
			k := r.str()
			m := r.uvarint()
			for j := uint64(0); j < m && r.err == nil; j++ {
				h = append(h, k, r.str())
			}
		}
		e.Header = h[:len(h):len(h)]
	}
	if r.err != nil {
		return nil, r.err
	}
	e.Body = b[r.i:]
	return e, nil
}

// stringsEnd checks the strings and headers of record b and returns where
// they end (where the body starts) and how many header values there are.
func stringsEnd(b []byte) (end, values int, err error) {
	r := reader{b: b, i: 18}
	for range 12 {
		r.skip()
	}
	if n := r.uvarint(); n > 0 && r.err == nil {
		if n > uint64(len(b)) {
			return 0, 0, errBadRecord
		}
		for i := uint64(0); i < n && r.err == nil; i++ {
			r.skip()
			m := r.uvarint()
			if m > uint64(len(b)) {
				return 0, 0, errBadRecord
			}
			for j := uint64(0); j < m && r.err == nil; j++ {
				r.skip()
				values++
			}
		}
	}
	return r.i, values, r.err
}

type reader struct {
	b []byte
	// s holds b[base:] up to the end of the strings, when str is used.
	s    string
	base int
	i    int
	err  error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b[r.i:])
	if n <= 0 {
		r.err = errBadRecord
		return 0
	}
	r.i += n
	return v
}

// str reads a string, sharing r.s's memory.
func (r *reader) str() string {
	n := r.uvarint()
	if r.err != nil {
		return ""
	}
	if n > uint64(r.base+len(r.s)-r.i) {
		r.err = errBadRecord
		return ""
	}
	s := r.s[r.i-r.base : r.i-r.base+int(n)]
	r.i += int(n)
	return s
}

// skip passes over a string.
func (r *reader) skip() {
	n := r.uvarint()
	if r.err != nil {
		return
	}
	if n > uint64(len(r.b)-r.i) {
		r.err = errBadRecord
		return
	}
	r.i += int(n)
}
