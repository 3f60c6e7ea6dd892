package reminders

import (
	"net/http"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	return httpx.ReadBody(w, r, limit, "send a smaller reminder (data included)")
}

func nilOnAbsent(w http.ResponseWriter, r *http.Request) (noa, ok bool) {
	return httpx.NilOnAbsent(w, r)
}

func storeError(w http.ResponseWriter, what string, err error) {
	httpx.StoreError(w, "reminder store", what, err)
}

func unavailable(err error) bool { return httpx.RedisUnavailable(err) }

func writeText(w http.ResponseWriter, status int, s string) { httpx.Text(w, status, s) }
func writeJSON(w http.ResponseWriter, body []byte)          { httpx.JSON(w, body) }
