package mesh

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Retry orchestration, as KAR guarantees it ("Reliable Actors with Retry
// Orchestration", PLDI 2023): a request run again after its host failed
// does not start until the calls its earlier run had made have finished.
// Otherwise a callee of the first run and the same callee of the retry
// (same session, so let in by re-entrancy) run side by side, and a callee
// can be left running for nobody.
//
// The bookkeeping: a synchronous call made while this sidecar's component
// runs a request R (its parent) is recorded in the hash Calls(R) once it is
// sent, and its host removes it when it answers the call, whoever waits
// for the answer. A retry of R (a record redelivered by the partition's
// next owner, or passed on) waits until Calls(R) holds no call.
//
// Once sent, not before: a call recorded before it was sent stayed
// recorded for good when its sending failed or its sidecar died in
// between, and held every retry of its parent for orchestrationWait. The
// price is the other window: a call sent by a sidecar that dies before
// recording it is not waited for (as when Redis refuses the record). An
// answer can overtake the record (the host answers before the caller's
// write lands): the host then leaves a tombstone that the record does not
// overwrite (callDoneScript), and the caller removes it.
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

// enterService notes that this sidecar's component runs service request
// id. Kept apart from the sessions, by count, rather than as a session of
// its own: a session key made of the id and a stack per run were two
// allocations per service request.
func (m *Mesh) enterService(id string) {
	m.mu.Lock()
	m.serviceRuns[id]++
	m.mu.Unlock()
}

// leaveService notes that a run of service request id returned.
func (m *Mesh) leaveService(id string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.serviceRuns[id] <= 1 {
		delete(m.serviceRuns, id)
	} else {
		m.serviceRuns[id]--
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
	if len(m.sessions)+len(m.serviceRuns) != 1 {
		return ""
	}
	for id := range m.serviceRuns {
		return id
	}
	for _, stack := range m.sessions {
		if len(stack) > 0 {
			return stack[len(stack)-1]
		}
	}
	return ""
}

// callAnswered is the tombstone of a call answered before it was recorded.
const callAnswered = "answered"

// recordCall notes req in its parent's calls once it is sent.
func (m *Mesh) recordCall(ctx context.Context, req *Envelope) {
	if req.Parent == "" {
		return
	}
	key := m.keys.Calls(req.Parent)
	pipe := m.rdb.Pipeline()
	added := pipe.HSetNX(ctx, key, req.ID, strconv.FormatInt(time.Now().UnixMilli(), 10))
	pipe.Expire(ctx, key, callsTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		// The call goes on; only a retry of its parent would not wait for it.
		m.log.Warn("cannot record a nested call", "id", req.ID, "parent", req.Parent, "err", err)
		return
	}
	if !added.Val() {
		// Answered already: its host left a tombstone.
		m.rdb.HDel(ctx, key, req.ID)
	}
}

// callDoneScript removes a call from its parent's calls, or, when the
// call is not recorded yet, leaves a tombstone that its record will not
// overwrite. KEYS: the parent's calls. ARGV: call id, tombstone, TTL ms.
var callDoneScript = redis.NewScript(`
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
end
return 0`)

// callDone removes a call of env's parent once env is answered.
func (m *Mesh) callDone(env *Envelope) {
	if env.Parent == "" || env.Async {
		return
	}
	err := callDoneScript.Run(context.Background(), m.rdb, []string{m.keys.Calls(env.Parent)}, rootID(env.ID), callAnswered, callsTTL.Milliseconds()).Err()
	if err != nil {
		m.log.Warn("cannot note a nested call finished", "id", env.ID, "parent", env.Parent, "err", err)
	}
}

// callsRunning counts the calls recorded for parent that are not answered.
func (m *Mesh) callsRunning(ctx context.Context, parent string) (int, error) {
	vals, err := m.rdb.HVals(ctx, m.keys.Calls(parent)).Result()
	n := 0
	for _, v := range vals {
		if v != callAnswered {
			n++
		}
	}
	return n, err
}

// awaitEarlierCalls holds a request that may have run before (a retry)
// until the calls its earlier run made have finished.
func (m *Mesh) awaitEarlierCalls(env *Envelope) {
	deadline := time.Now().Add(orchestrationWait)
	logged := false
	for attempt := 0; ; attempt++ {
		n, err := m.callsRunning(context.Background(), env.ID)
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
