package mesh

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
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
	if resp == nil || resp.Status != http.StatusOK || !bytes.Contains(resp.Body, tailCallMark) {
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
		Method: http.MethodPost, Path: v.Path, Session: env.Session,
		Header: http.Header{"Content-Type": {"application/kar+json"}},
	}
	if !strings.HasPrefix(next.Path, "/") {
		next.Path = "/" + next.Path
	}
	// Actor payloads come as the JSON text of the argument array; service
	// payloads as a JSON value.
	var payload []byte = v.Payload
	var s string
	if json.Unmarshal(v.Payload, &s) == nil && v.ActorType != "" {
		payload = []byte(s)
	}
	next.Body = payload
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
		next.Header = http.Header{"Content-Type": {"application/json"}}
	default:
		return nil
	}
	return next
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
	m.produceRetry(next, p)
}
