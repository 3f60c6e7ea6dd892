package events

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// readBody reads the whole body within limit. On failure it has already
// answered the request (413 or 400) and returns ok=false.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) (body []byte, ok bool) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("request body larger than %d bytes: send a smaller event (Kafka's message size bounds it)", tooBig.Limit), http.StatusRequestEntityTooLarge)
			return nil, false
		}
		http.Error(w, "cannot read request body: "+err.Error(), http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

// nilOnAbsent reads ?nilOnAbsent=. On a malformed value it has already
// answered 400 and returns ok=false.
func nilOnAbsent(w http.ResponseWriter, r *http.Request) (noa, ok bool) {
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

// storeError answers a failed Redis operation: 503 when Redis cannot be
// reached right now (kar-sdk retries on 503), 500 otherwise.
func storeError(w http.ResponseWriter, what string, err error) {
	if redisUnavailable(err) {
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("subscription store unavailable while trying to %s (Redis): %s; retry later", what, oneLine(err.Error())), http.StatusServiceUnavailable)
		return
	}
	http.Error(w, fmt.Sprintf("subscription store failed to %s: %s", what, oneLine(err.Error())), http.StatusInternalServerError)
}

// redisUnavailable tells transient unavailability (no connection, Redis
// loading or failing over) from errors a retry would not fix.
func redisUnavailable(err error) bool {
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

// eventError answers a failed publish: 400 for a bad event, 413 for one
// too large, 503 (with Retry-After) when Kafka cannot take it now.
func eventError(w http.ResponseWriter, what string, err error) {
	var bad errBadEvent
	var big tooLargeErr
	switch {
	case errors.As(err, &bad):
		http.Error(w, fmt.Sprintf("cannot %s: %s", what, bad.msg), http.StatusBadRequest)
	case errors.As(err, &big):
		http.Error(w, fmt.Sprintf("cannot %s: %s", what, oneLine(err.Error())), http.StatusRequestEntityTooLarge)
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("cannot %s now (Kafka): %s; retry later", what, oneLine(err.Error())), http.StatusServiceUnavailable)
	}
}

func writeText(w http.ResponseWriter, status int, s string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	io.WriteString(w, s)
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}
