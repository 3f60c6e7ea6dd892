package mesh

import (
	"context"
	"strconv"
	"time"
)

// Retry orchestration, as KAR guarantees it ("Reliable Actors with Retry
// Orchestration", PLDI 2023): a request run again after its host failed
// does not start until the calls its earlier run had made have finished.
// Otherwise a callee of the first run and the same callee of the retry
// (same session, so let in by re-entrancy) run side by side, and a callee
// can be left running for nobody.
//
// The bookkeeping: a synchronous call made while this sidecar's component
// runs a request R (its parent) is recorded in the hash Calls(R) before it
// is sent, and its host removes it when it answers the call, whoever
// waits for the answer. A retry of R (a record redelivered by the
// partition's next owner, or passed on) waits until Calls(R) is empty.
//
// The parent of a call is found by its session: an actor method's nested
// calls carry the session of the request that runs it, and within one
// session only the innermost request runs component code (the others wait
// for their nested calls). A call with no session (a service call) is given
// a parent only when exactly one request runs here: a component that
// serves several at once cannot say which one made it.

// orchestrationWait bounds how long a retry waits for the calls of its
// earlier run: a record of a call whose answer was lost entirely (its
// host and every redelivery gone) must not hold the retry for ever.
const orchestrationWait = 10 * time.Minute

// callsTTL bounds how long Redis keeps a request's record of calls.
const callsTTL = time.Hour

// enter notes that this sidecar's component runs request id in session.
func (m *Mesh) enter(session, id string) {
	if session == "" {
		return
	}
	m.mu.Lock()
	m.sessions[session] = append(m.sessions[session], id)
	m.mu.Unlock()
}

// leave notes that request id of session returned.
func (m *Mesh) leave(session, id string) {
	if session == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	stack := m.sessions[session]
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i] == id {
			stack = append(stack[:i], stack[i+1:]...)
			break
		}
	}
	if len(stack) == 0 {
		delete(m.sessions, session)
	} else {
		m.sessions[session] = stack
	}
}

// parentOf is the request a new synchronous call of session comes from:
// the innermost one running here in that session, or, for a call with no
// session, the only one running here. "" when unknown.
func (m *Mesh) parentOf(session string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if session != "" {
		if stack := m.sessions[session]; len(stack) > 0 {
			return stack[len(stack)-1]
		}
		return ""
	}
	if len(m.sessions) != 1 {
		return ""
	}
	for _, stack := range m.sessions {
		if len(stack) > 0 {
			return stack[len(stack)-1]
		}
	}
	return ""
}

// recordCall notes req in its parent's calls before it is sent.
func (m *Mesh) recordCall(ctx context.Context, req *Envelope) {
	if req.Parent == "" {
		return
	}
	key := m.keys.Calls(req.Parent)
	pipe := m.rdb.Pipeline()
	pipe.HSet(ctx, key, req.ID, strconv.FormatInt(time.Now().UnixMilli(), 10))
	pipe.Expire(ctx, key, callsTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		// The call goes on; only a retry of its parent would not wait for it.
		m.log.Warn("cannot record a nested call", "id", req.ID, "parent", req.Parent, "err", err)
	}
}

// callDone removes a call of env's parent once env is answered.
func (m *Mesh) callDone(env *Envelope) {
	if env.Parent == "" || env.Async {
		return
	}
	if err := m.rdb.HDel(context.Background(), m.keys.Calls(env.Parent), rootID(env.ID)).Err(); err != nil {
		m.log.Warn("cannot note a nested call finished", "id", env.ID, "parent", env.Parent, "err", err)
	}
}

// awaitEarlierCalls holds a request that may have run before (a retry)
// until the calls its earlier run made have finished.
func (m *Mesh) awaitEarlierCalls(env *Envelope) {
	key := m.keys.Calls(env.ID)
	deadline := time.Now().Add(orchestrationWait)
	logged := false
	for attempt := 0; ; attempt++ {
		n, err := m.rdb.HLen(context.Background(), key).Result()
		if err == nil && n == 0 {
			if logged {
				m.log.Info("the calls of a request's earlier run finished; running it again", "id", env.ID)
			}
			return
		}
		if time.Now().After(deadline) {
			m.log.Warn("running a request again while calls of its earlier run may still run", "id", env.ID, "calls", n, "err", err)
			return
		}
		if !logged && err == nil {
			m.log.Info("a request runs again once the calls of its earlier run finish", "id", env.ID, "calls", n)
			logged = true
		}
		if !m.pause(min(20*time.Millisecond<<min(attempt, 5), 500*time.Millisecond)) {
			return
		}
	}
}
