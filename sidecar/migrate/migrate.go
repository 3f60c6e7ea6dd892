// Package migrate copies an application's data from IBM KAR 1.3.10's Redis
// layout into kar's: actor state (with sub-maps), reminders and event
// subscriptions (the layout is described in kar-1.3.10-keyspace.md; what
// else KAR keeps in Redis is transient and is not copied).
//
// It reads KAR's keys directly and writes through kar's own REST routes
// (served in process by the caller), so that kar's validation and key
// scheme stay in one place. What kar already holds is left alone: an actor
// with state in kar, a reminder or a subscription kar has, is not copied
// again, so a second run changes nothing and a run after the application
// moved to kar never rolls its data back.
package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
)

// Summary is what a run copied, found already in kar, or could not copy.
type Summary struct {
	Actors, StateEntries, Reminders, Subscriptions int // copied (or to copy, in a dry run)
	PresentActors, PresentReminders, PresentSubs   int // already in kar, left alone
	Problems                                       []string
}

func (s Summary) String() string {
	return fmt.Sprintf("%d actors (%d state entries), %d reminders, %d subscriptions; already in kar: %d actors, %d reminders, %d subscriptions; %d problems",
		s.Actors, s.StateEntries, s.Reminders, s.Subscriptions, s.PresentActors, s.PresentReminders, s.PresentSubs, len(s.Problems))
}

// Run copies app's KAR data found in rdb through routes (kar's actor
// state, reminders and events routes). With dryRun it only reads and
// counts. An error means Redis or the routes failed; records that cannot
// be copied are listed in Summary.Problems and the run goes on.
func Run(ctx context.Context, rdb redis.UniversalClient, app string, routes http.Handler, dryRun bool) (Summary, error) {
	m := &migration{rdb: rdb, prefix: "kar_" + app + "_", routes: routes, dryRun: dryRun}
	// Reminders name their actor in their fields: their types help split
	// the state and subscription keys, which do not.
	reminders, err := m.scan(ctx, "binding_*_reminders_*")
	if err != nil {
		return m.sum, err
	}
	types := map[string]bool{}
	var rems []map[string]string
	for _, k := range reminders {
		h, err := rdb.HGetAll(ctx, k).Result()
		if err != nil {
			return m.sum, fmt.Errorf("read KAR reminder %s: %w", k, err)
		}
		if h["actorType"] != "" {
			types[h["actorType"]] = true
		}
		rems = append(rems, h)
	}
	states, err := m.scan(ctx, "main_state_*")
	if err != nil {
		return m.sum, err
	}
	for _, k := range states {
		typ, id, ok := SplitActor(strings.TrimPrefix(k, m.prefix+"main_state_"), types)
		if !ok {
			m.problem("state key %s: cannot tell the actor type from the id", k)
			continue
		}
		if err := m.state(ctx, k, typ, id); err != nil {
			return m.sum, err
		}
	}
	for i, h := range rems {
		if err := m.reminder(ctx, reminders[i], h); err != nil {
			return m.sum, err
		}
	}
	subs, err := m.scan(ctx, "binding_*_subscriptions_*")
	if err != nil {
		return m.sum, err
	}
	for _, k := range subs {
		if err := m.subscription(ctx, k, types); err != nil {
			return m.sum, err
		}
	}
	return m.sum, nil
}

type migration struct {
	rdb    redis.UniversalClient
	prefix string
	routes http.Handler
	dryRun bool
	sum    Summary
}

func (m *migration) problem(format string, args ...any) {
	m.sum.Problems = append(m.sum.Problems, fmt.Sprintf(format, args...))
}

// scan lists KAR's keys of the application matching pattern, sorted.
func (m *migration) scan(ctx context.Context, pattern string) ([]string, error) {
	// KAR's keys have no hash tag: on a Redis Cluster they are on every primary.
	out, err := store.ScanKeys(ctx, m.rdb, m.prefix+pattern)
	if err != nil {
		return nil, fmt.Errorf("list KAR keys: %w", err)
	}
	sort.Strings(out)
	return out, nil
}

// call serves one request with kar's routes.
func (m *migration) call(ctx context.Context, method, path string, body any) (int, string, error) {
	var req *http.Request
	if body == nil {
		req = httptest.NewRequestWithContext(ctx, method, path, nil)
	} else {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, "", err
		}
		req = httptest.NewRequestWithContext(ctx, method, path, strings.NewReader(string(b)))
		req.Header.Set("Content-Type", "application/json")
	}
	rec := httptest.NewRecorder()
	m.routes.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		return rec.Code, rec.Body.String(), fmt.Errorf("%s %s: %d %s", method, path, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
	return rec.Code, rec.Body.String(), nil
}

func actorPath(typ, id string) string {
	return "/kar/v1/actor/" + url.PathEscape(typ) + "/" + url.PathEscape(id)
}

// state copies one actor's state hash, unless kar has state for the actor.
func (m *migration) state(ctx context.Context, key, typ, id string) error {
	fields, err := m.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("read KAR state %s: %w", key, err)
	}
	status, body, err := m.call(ctx, http.MethodGet, actorPath(typ, id)+"/state", nil)
	if err != nil {
		return err
	}
	if status == http.StatusOK && strings.TrimSpace(body) != "{}" {
		m.sum.PresentActors++
		return nil
	}
	op := struct {
		Updates       map[string]json.RawMessage            `json:"updates,omitempty"`
		SubmapUpdates map[string]map[string]json.RawMessage `json:"submapupdates,omitempty"`
	}{map[string]json.RawMessage{}, map[string]map[string]json.RawMessage{}}
	n := 0
	for f, v := range fields {
		k, sub, isSub, ok := SplitField(f)
		switch {
		case !ok:
			m.problem("state of %s/%s: field %q is neither key__ nor map_subkey", typ, id, f)
			continue
		case !json.Valid([]byte(v)):
			m.problem("state of %s/%s: field %q does not hold JSON", typ, id, f)
			continue
		case isSub:
			if op.SubmapUpdates[k] == nil {
				op.SubmapUpdates[k] = map[string]json.RawMessage{}
			}
			op.SubmapUpdates[k][sub] = json.RawMessage(v)
		default:
			op.Updates[k] = json.RawMessage(v)
		}
		n++
	}
	if n == 0 {
		return nil
	}
	m.sum.Actors++
	m.sum.StateEntries += n
	if m.dryRun {
		return nil
	}
	if status, body, err = m.call(ctx, http.MethodPost, actorPath(typ, id)+"/state", op); err != nil {
		return err
	}
	if status != http.StatusOK {
		m.sum.Actors--
		m.sum.StateEntries -= n
		m.problem("state of %s/%s: kar answered %d %s", typ, id, status, strings.TrimSpace(body))
	}
	return nil
}

// reminder copies one reminder hash, unless kar has the reminder.
func (m *migration) reminder(ctx context.Context, key string, h map[string]string) error {
	typ, id, rid := h["actorType"], h["actorId"], h["id"]
	if typ == "" || id == "" || rid == "" || h["path"] == "" || h["targetTime"] == "" {
		m.problem("reminder %s lacks actorType, actorId, id, path or targetTime", key)
		return nil
	}
	path := actorPath(typ, id) + "/reminders/" + url.PathEscape(rid)
	present, err := m.present(ctx, path)
	if err != nil || present {
		m.sum.PresentReminders += btoi(present)
		return err
	}
	body := map[string]any{"path": h["path"], "targetTime": h["targetTime"]}
	if h["period"] != "" {
		body["period"] = h["period"]
	}
	if d := h["encodedData"]; d != "" {
		if !json.Valid([]byte(d)) {
			m.problem("reminder %s: encodedData is not JSON", key)
			return nil
		}
		body["data"] = json.RawMessage(d)
	}
	return m.put(ctx, path, body, "reminder "+key, &m.sum.Reminders)
}

// subscription copies one subscription hash, unless kar has it.
func (m *migration) subscription(ctx context.Context, key string, types map[string]bool) error {
	rest := strings.TrimPrefix(key, m.prefix+"binding_")
	_, rest, _ = strings.Cut(rest, "_") // the partition, always 0 in KAR 1.3.10
	rest = strings.TrimPrefix(rest, "subscriptions_")
	typ, idSub, ok := SplitActor(rest, types)
	id, sid, ok2 := strings.Cut(idSub, "_")
	if !ok || !ok2 || id == "" || sid == "" {
		m.problem("subscription key %s: cannot tell the actor type, id and subscription id apart", key)
		return nil
	}
	h, err := m.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("read KAR subscription %s: %w", key, err)
	}
	path := actorPath(typ, id) + "/events/" + url.PathEscape(sid)
	present, err := m.present(ctx, path)
	if err != nil || present {
		m.sum.PresentSubs += btoi(present)
		return err
	}
	// KAR stored the PUT body's fields as they were given (path, topic,
	// group, contentType, offsetOldest): kar's route reads the same body.
	body := map[string]string{}
	for k, v := range h {
		body[k] = v
	}
	return m.put(ctx, path, body, "subscription "+key, &m.sum.Subscriptions)
}

// present tells whether kar's GET at path finds the record.
func (m *migration) present(ctx context.Context, path string) (bool, error) {
	status, body, err := m.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return false, err
	}
	switch status {
	case http.StatusOK:
		return true, nil
	case http.StatusNotFound:
		return false, nil
	}
	return false, fmt.Errorf("GET %s: %d %s", path, status, strings.TrimSpace(body))
}

// put writes body at path (unless a dry run) and counts it in *count; a
// record kar refuses is a problem, not an error.
func (m *migration) put(ctx context.Context, path string, body any, what string, count *int) error {
	if m.dryRun {
		*count++
		return nil
	}
	status, answer, err := m.call(ctx, http.MethodPut, path, body)
	if err != nil {
		return err
	}
	if status >= 300 {
		m.problem("%s: kar answered %d %s", what, status, strings.TrimSpace(answer))
		return nil
	}
	*count++
	return nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// SplitActor splits KAR's "type_id" (KAR does not escape '_'): at the end
// of the longest known type that rest starts with, else at the first '_'.
func SplitActor(rest string, types map[string]bool) (typ, id string, ok bool) {
	best := ""
	for t := range types {
		if len(t) > len(best) && strings.HasPrefix(rest, t+"_") && len(rest) > len(t)+1 {
			best = t
		}
	}
	if best != "" {
		return best, rest[len(best)+1:], true
	}
	typ, id, ok = strings.Cut(rest, "_")
	return typ, id, ok && typ != "" && id != ""
}

// SplitField reads a field of KAR's state hash: "k__" is the plain key k,
// "m_s" the entry s of sub-map m (split at the first '_'). KAR's own getAll
// splits at the first '_' in both cases, so a plain key holding '_' came
// back from KAR as a sub-map entry; this rule recovers it.
func SplitField(f string) (key, subkey string, isSub, ok bool) {
	if k, found := strings.CutSuffix(f, "__"); found && k != "" {
		return k, "", false, true
	}
	key, subkey, ok = strings.Cut(f, "_")
	return key, subkey, true, ok && key != "" && subkey != ""
}
