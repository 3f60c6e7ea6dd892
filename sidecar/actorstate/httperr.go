package actorstate

import (
	"net/http"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// DefaultMaxBodyBytes bounds a request body unless WithMaxBodyBytes says otherwise.
const DefaultMaxBodyBytes = 8 << 20

func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, bool) {
	return httpx.ReadBody(w, r, limit, "store smaller values (or raise the sidecar's body limit)")
}

func nilOnAbsent(w http.ResponseWriter, r *http.Request) (noa, ok bool) {
	return httpx.NilOnAbsent(w, r)
}

func storeError(w http.ResponseWriter, what string, err error) {
	httpx.StoreError(w, "actor state store", what, err)
}

func writeText(w http.ResponseWriter, status int, s string) { httpx.Text(w, status, s) }
func writeJSON(w http.ResponseWriter, body []byte)          { httpx.JSON(w, body) }
