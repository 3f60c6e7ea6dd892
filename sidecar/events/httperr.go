package events

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	return httpx.ReadBody(w, r, limit, "send a smaller event (Kafka's message size bounds it)")
}

func nilOnAbsent(w http.ResponseWriter, r *http.Request) (noa, ok bool) {
	return httpx.NilOnAbsent(w, r)
}

func storeError(w http.ResponseWriter, what string, err error) {
	httpx.StoreError(w, "subscription store", what, err)
}

func redisUnavailable(err error) bool { return httpx.RedisUnavailable(err) }

func writeText(w http.ResponseWriter, status int, s string) { httpx.Text(w, status, s) }
func writeJSON(w http.ResponseWriter, body []byte)          { httpx.JSON(w, body) }

// eventError answers a failed publish: 400 for a bad event, 413 for one
// too large, 503 (with Retry-After) when Kafka cannot take it now.
func eventError(w http.ResponseWriter, what string, err error) {
	var bad errBadEvent
	var big tooLargeErr
	switch {
	case errors.As(err, &bad):
		http.Error(w, fmt.Sprintf("cannot %s: %s", what, bad.Error()), http.StatusBadRequest)
	case errors.As(err, &big):
		http.Error(w, fmt.Sprintf("cannot %s: %s", what, oneLine(err.Error())), http.StatusRequestEntityTooLarge)
	default:
		w.Header().Set("Retry-After", "1")
		http.Error(w, fmt.Sprintf("cannot %s now (Kafka): %s; retry later", what, oneLine(err.Error())), http.StatusServiceUnavailable)
	}
}
