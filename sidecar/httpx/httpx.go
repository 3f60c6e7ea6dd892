// Package httpx holds the small HTTP answers shared by the sidecar's route
// packages (actor state, reminders, events): bounded bodies, the
// nilOnAbsent parameter, and store errors told apart as "retry later"
// (503, which kar-sdk retries) or "failed" (500).
package httpx

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// ReadBody reads the whole body within limit. On failure it has already
// answered the request (see BodyError) and returns ok=false.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64, hint string) (body []byte, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		BodyError(w, err, hint)
		return nil, false
	}
	return body, true
}

// BodyError answers a failed read of a request body: 413 beyond the limit
// (with hint, when given, on what to do), 408 when the body came too
// slowly (the REST API's front door sets a read deadline), 400 otherwise.
func BodyError(w http.ResponseWriter, err error, hint string) {
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		msg := fmt.Sprintf("request body larger than %d bytes", tooBig.Limit)
		if hint != "" {
			msg += ": " + hint
		}
		http.Error(w, msg, http.StatusRequestEntityTooLarge)
	case errors.Is(err, os.ErrDeadlineExceeded):
		http.Error(w, err.Error(), http.StatusRequestTimeout)
	default:
		http.Error(w, "cannot read request body: "+err.Error(), http.StatusBadRequest)
	}
}

// NilOnAbsent reads the ?nilOnAbsent= query parameter. On a malformed
// value it has already answered 400 and returns ok=false.
func NilOnAbsent(w http.ResponseWriter, r *http.Request) (noa, ok bool) {
	s := r.URL.Query().Get("nilOnAbsent")
	if s == "" {
		return false, true
	}
	noa, err := strconv.ParseBool(s)
	if err != nil {
		http.Error(w, fmt.Sprintf("query parameter nilOnAbsent=%q is not a boolean: use true or false", s), http.StatusBadRequest)
		return false, false
	}
	return noa, true
}

// StoreError answers a failed Redis operation of store ("actor state
// store", ...): 503 with Retry-After when Redis cannot be reached right
// now, 500 otherwise. go-redis errors name the address at most, never the
// credentials.
func StoreError(w http.ResponseWriter, store, what string, err error) {
	if RedisUnavailable(err) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("%s unavailable while trying to %s (Redis): %s; retry later", store, what, OneLine(err.Error())), http.StatusServiceUnavailable)
		return
	}
	http.Error(w, fmt.Sprintf("%s failed to %s: %s", store, what, OneLine(err.Error())), http.StatusInternalServerError)
}

// RedisUnavailable tells transient unavailability (no connection, Redis
// loading or failing over) from errors a retry would not fix.
func RedisUnavailable(err error) bool {
	var rerr redis.Error
	if !errors.As(err, &rerr) {
		return true // network, pool timeout, closed client, cancelled request
	}
	msg := rerr.Error()
	for _, p := range []string{"LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "READONLY"} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// Text writes a plain-text answer.
func Text(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, s)
}

// JSON writes a 200 answer whose body is already JSON.
func JSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// OneLine keeps a message on one line (for HTTP answers and log fields).
func OneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// IsToken tells whether s is an HTTP token: a method or a header field
// name (RFC 9110, 5.6.2).
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if b := s[i]; !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0) {
			return false
		}
	}
	return true
}

// ValidFieldValue tells whether v may be a header field's value: no
// control character but tab.
func ValidFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; b < ' ' && b != '\t' || b == 0x7f {
			return false
		}
	}
	return true
}
