// Package reminders stores actor reminders in Redis, serves their routes of
// the KAR REST API (/kar/v1/actor/{type}/{id}/reminders...) and fires them
// when due.
//
// Layout (adapter/store/keys.go): the hash Reminders() maps a field
// "type/id/reminderId" (each part URL-path-escaped, so a "/" inside a part
// cannot make two reminders collide) to the reminder's JSON (the API's
// Reminder object); the sorted set ReminderSchedule() holds the same fields
// scored by the time, in Unix milliseconds, at which a scheduler should next
// look at them: the target time, or the deadline of a claim in progress.
//
// Any number of schedulers (one per sidecar) may run against the same Redis;
// see Run for how each occurrence is fired exactly once while no scheduler
// dies holding it, and at least once when one does.
package reminders

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// Actor names an actor instance.
type Actor struct {
	Type string `json:"Type"`
	ID   string `json:"ID"`
}

// Reminder is a time-triggered asynchronous invocation of Path on Actor,
// as the API shows it.
type Reminder struct {
	Actor      Actor     `json:"Actor"`
	ID         string    `json:"id"`
	Path       string    `json:"path"`
	TargetTime time.Time `json:"targetTime"`
	// Period is 0 for a one-shot reminder. In JSON: integer nanoseconds.
	Period time.Duration `json:"period,omitempty"`
	// EncodedData is the JSON text of the payload the actor method receives.
	EncodedData string `json:"encodedData,omitempty"`
}

// MinPeriod is the shortest period a periodic reminder may have: shorter
// ones would keep a scheduler busy firing nothing but them.
const MinPeriod = time.Millisecond

// schedulePayload is the body of PUT .../reminders/{reminderId}
// (scheduleReminderPayload in the API).
type schedulePayload struct {
	Path       string          `json:"path"`
	TargetTime json.RawMessage `json:"targetTime"`
	Period     json.RawMessage `json:"period"`
	Data       json.RawMessage `json:"data"`
}

// timeLayouts are the ISO-8601 forms targetTime is accepted in: RFC 3339
// (what JavaScript's Date.toISOString and Go produce) and offsets without a colon.
var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999Z0700",
}

// ParseSchedule turns a PUT body into the Reminder for actor/id. Errors
// say which field is wrong and what it should look like.
func ParseSchedule(actor Actor, id string, body []byte) (Reminder, error) {
	var p schedulePayload
	if len(bytes.TrimSpace(body)) == 0 {
		return Reminder{}, errors.New(`request body is empty: send {"path": "/method", "targetTime": "2006-01-02T15:04:05Z", "period": "30s", "data": ...}`)
	}
	if err := json.Unmarshal(body, &p); err != nil {
		return Reminder{}, fmt.Errorf(`request body is not a reminder {"path": "/method", "targetTime": "2006-01-02T15:04:05Z", "period": "30s", "data": ...}: %w`, err)
	}
	r := Reminder{Actor: actor, ID: id, Path: p.Path}
	if r.Path == "" {
		return Reminder{}, errors.New(`"path" is missing: name the actor method to invoke, e.g. "/remind"`)
	}
	if err := httpx.CheckMethodPath(r.Path); err != nil {
		return Reminder{}, fmt.Errorf(`"path": %w`, err)
	}

	var ts string
	if isNull(p.TargetTime) {
		return Reminder{}, errors.New(`"targetTime" is missing: give the first firing time in ISO-8601, e.g. "2006-01-02T15:04:05.000Z"`)
	}
	if err := json.Unmarshal(p.TargetTime, &ts); err != nil {
		return Reminder{}, fmt.Errorf(`"targetTime" must be an ISO-8601 string such as "2006-01-02T15:04:05.000Z", not %s`, p.TargetTime)
	}
	t, err := parseTime(ts)
	if err != nil {
		return Reminder{}, fmt.Errorf(`"targetTime" %q is not an ISO-8601 date-time such as "2006-01-02T15:04:05.000Z" (with a time zone)`, ts)
	}
	r.TargetTime = t.UTC()

	if !isNull(p.Period) {
		var ps string
		if err := json.Unmarshal(p.Period, &ps); err != nil {
			return Reminder{}, fmt.Errorf(`"period" must be a Go duration string such as "30s" or "1h30m", not %s`, p.Period)
		}
		if ps != "" {
			d, err := time.ParseDuration(ps)
			if err != nil {
				return Reminder{}, fmt.Errorf(`"period" %q is not a Go duration such as "30s", "500ms" or "1h30m"`, ps)
			}
			if d < 0 {
				return Reminder{}, fmt.Errorf(`"period" %q is negative: give a positive duration, or none for a one-shot reminder`, ps)
			}
			if d > 0 && d < MinPeriod {
				return Reminder{}, fmt.Errorf(`"period" %q is shorter than the minimum %v`, ps, MinPeriod)
			}
			r.Period = d
		}
	}

	if !isNull(p.Data) {
		var buf bytes.Buffer
		if err := json.Compact(&buf, p.Data); err != nil {
			return Reminder{}, fmt.Errorf(`"data": %w`, err)
		}
		r.EncodedData = buf.String()
	}
	return r, nil
}

func isNull(raw json.RawMessage) bool {
	s := bytes.TrimSpace(raw)
	return len(s) == 0 || string(s) == "null"
}

func parseTime(s string) (time.Time, error) {
	var err error
	for _, layout := range timeLayouts {
		var t time.Time
		if t, err = time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, err
}

// field is the reminder's field in the Reminders hash and member of the schedule.
func field(actorType, actorID, id string) string {
	return instancePrefix(actorType, actorID) + url.PathEscape(id)
}

func instancePrefix(actorType, actorID string) string {
	return url.PathEscape(actorType) + "/" + url.PathEscape(actorID) + "/"
}

// splitField reads the actor type and id back from a field.
func splitField(f string) (actorType, actorID string, ok bool) {
	parts := strings.Split(f, "/")
	if len(parts) != 3 {
		return "", "", false
	}
	typ, err1 := url.PathUnescape(parts[0])
	id, err2 := url.PathUnescape(parts[1])
	return typ, id, err1 == nil && err2 == nil
}

func (r Reminder) field() string { return field(r.Actor.Type, r.Actor.ID, r.ID) }

// score is when the reminder is due, in Unix milliseconds rounded up, so
// that a scheduler never fires before the target time.
func score(t time.Time) int64 {
	ns := t.UnixNano()
	ms := ns / 1e6
	if ns%1e6 > 0 {
		ms++
	}
	return ms
}

// nextTarget is the first occurrence of a periodic reminder after its
// occurrence at target that is still in the future at now, and how many
// occurrences that skips (a scheduler far behind does not fire a burst).
func nextTarget(target time.Time, period time.Duration, now time.Time) (next time.Time, skipped int64) {
	next = target.Add(period)
	if next.After(now) {
		return next, 0
	}
	k := int64(now.Sub(target)/period) + 1 // > 1
	return target.Add(time.Duration(k) * period), k - 1
}
