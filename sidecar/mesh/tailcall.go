package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/metrics"
)

// stepRecordTTL bounds how long the result of a tail-call step is kept
// for replay: far longer than any redelivery takes.
const stepRecordTTL = 24 * time.Hour

// Tail calls. A component answers a call with
//
//	{"tailCall": true, "value": {"actorType", "actorId", "path", "payload", "releaseLock"}}
//	{"tailCall": true, "value": {"serviceName", "path", "payload", "method"}}
//
// and the runtime continues with that request on behalf of the original
// caller, who gets the last step's answer. Each step's continuation is
// recorded in Redis under the step's request id before it is sent (the
// step's result and the next step's request are committed together), so a
// redelivered step resends the recorded continuation instead of running
// its method again.
//
// The payload is the next request's body as a JSON string, as kar-sdk
// sends it (actor.tailCall sends JSON.stringify(args); tailCall to a
// service sends what the method gave it, which KAR requires to be a
// string). A payload that is another JSON value is sent as that value.
type tailCall struct {
	TailCall bool `json:"tailCall"`
	Value    struct {
		ActorType   string          `json:"actorType"`
		ActorID     string          `json:"actorId"`
		ServiceName string          `json:"serviceName"`
		Path        string          `json:"path"`
		Method      string          `json:"method"`
		Payload     json.RawMessage `json:"payload"`
		ReleaseLock any             `json:"releaseLock"`
	} `json:"value"`
}

var tailCallMark = []byte(`"tailCall"`)

// continuation returns the next step of a tail call, or nil.
func continuation(env, resp *Envelope, step int) *Envelope {
	if resp == nil || resp.Status != http.StatusOK || resp.Error || !bytes.Contains(resp.Body, tailCallMark) {
		return nil
	}
	if env.ActorType == "" && !isKarJSON(resp.Header) {
		// A service's answer is a tail call only when the service says so
		// with the actor protocol's media type: a plain JSON answer is the
		// service's data, passed on as KAR passes it, even when it looks
		// like a tail call (it may hold what a user sent).
		return nil
	}
	var tc tailCall
	if json.Unmarshal(resp.Body, &tc) != nil || !tc.TailCall {
		return nil
	}
	v := tc.Value
	next := &Envelope{
		Kind: KindRequest, ID: rootID(env.ID) + "." + stepSuffix(env.ID, step),
		From: env.From, FromPart: env.FromPart, Async: env.Async, Deadline: env.Deadline,
		Method: http.MethodPost, Path: v.Path, Session: env.Session, Parent: env.Parent,
		Header: httpx.Fields{"Content-Type", "application/kar+json"},
		Body:   payloadBody(v.Payload),
	}
	if !strings.HasPrefix(next.Path, "/") {
		next.Path = "/" + next.Path
	}
	// The chain stays in the caller's trace (W3C trace context).
	carryTrace(env.Header, &next.Header)
	switch {
	case v.ActorType != "":
		next.ActorType, next.ActorID = v.ActorType, v.ActorID
		next.releaseLock = truthy(v.ReleaseLock)
		if next.ActorType != env.ActorType || next.ActorID != env.ActorID {
			// Another instance: a session of its own.
			next.Session = next.ID
		}
	case v.ServiceName != "":
		next.Service = v.ServiceName
		next.Session = ""
		if v.Method != "" {
			next.Method = strings.ToUpper(v.Method)
		}
		next.Header = httpx.Fields{"Content-Type", "application/json"}
		carryTrace(env.Header, &next.Header)
		// The chain's caller made an actor call when an actor method began
		// it: the service's answer must reach it as an actor result.
		next.ActorResult = env.ActorType != "" || env.ActorResult
	default:
		return nil
	}
	return next
}

// carryTrace copies the W3C trace context headers of from to to.
func carryTrace(from httpx.Fields, to *httpx.Fields) {
	for i := 0; i+1 < len(from); i += 2 {
		if k := from[i]; k == "Traceparent" || k == "Tracestate" {
			to.Add(k, from[i+1])
		}
	}
}

// payloadBody is the body a tail call's payload stands for: the content
// of a JSON string, any other JSON value as it is, nothing for none.
func payloadBody(p json.RawMessage) []byte {
	var s string
	if json.Unmarshal(p, &s) == nil {
		return []byte(s)
	}
	if len(p) == 0 || string(p) == "null" {
		return nil
	}
	return p
}

// actorResult turns the answer of a service step that an actor method's
// tail call led to into what the chain's caller, who made an actor call,
// expects: a 200 answer becomes {"value": ...} (application/kar+json),
// its JSON body as the value, or its text when the body is not JSON; other
// statuses pass as they are. KAR 1.3.10 does the same.
func actorResult(env, resp *Envelope) *Envelope {
	if !env.ActorResult || resp == nil || resp.Error || resp.Status != http.StatusOK {
		return resp
	}
	var v any = string(resp.Body)
	if json.Valid(resp.Body) {
		v = json.RawMessage(resp.Body)
	}
	b, err := json.Marshal(struct {
		Value any `json:"value"`
	}{v})
	if err != nil {
		return resp
	}
	r := *resp
	r.Header = httpx.Fields{"Content-Type", "application/kar+json"}
	r.Body = b
	return &r
}

// isKarJSON reports whether a component answered with the actor
// protocol's media type.
func isKarJSON(h httpx.Fields) bool {
	mt, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	return mt == "application/kar+json"
}

func truthy(v any) bool {
	switch x := v.(type) {
	case bool:
		return x
	case string:
		b, _ := strconv.ParseBool(x)
		return b
	}
	return false
}

// rootID is the id the original caller waits on.
func rootID(id string) string {
	if i := strings.IndexByte(id, '.'); i >= 0 {
		return id[:i]
	}
	return id
}

func isStep(id string) bool { return strings.IndexByte(id, '.') >= 0 }

// stepSuffix numbers the steps of a chain deterministically, so that a
// redelivered step makes the same next id.
func stepSuffix(id string, step int) string {
	n := 0
	if i := strings.LastIndexByte(id, '.'); i >= 0 {
		n, _ = strconv.Atoi(id[i+1:])
	}
	return strconv.Itoa(n + step + 1)
}

func (m *Mesh) recordStep(id string, next *Envelope) error {
	b, err := m.encode(next)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return m.rdb.Set(ctx, m.keys.Response(id), b, stepRecordTTL).Err()
}

// sendContinuation routes the next step like any request, on behalf of the
// original caller.
func (m *Mesh) sendContinuation(next *Envelope) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var t *Member
	if next.ActorType != "" {
		t, _ = m.place(ctx, next.ActorType, next.ActorID, "")
	} else {
		t = m.target(next)
	}
	p := m.selfPartition()
	if t != nil {
		next.To = t.ID
		p = t.Partition
	}
	if m.produceRetry(next, p) {
		m.opts.Metrics.Sent(metrics.TailCall, next.ActorType != "", next.TargetName(), http.StatusAccepted, 0)
	}
}
