package actorstate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
)

// Option adjusts the routes Register installs.
type Option func(*server)

// WithMaxBodyBytes bounds request bodies (default DefaultMaxBodyBytes); a
// larger body is answered 413.
func WithMaxBodyBytes(n int64) Option {
	return func(s *server) {
		if n > 0 {
			s.maxBody = n
		}
	}
}

type server struct {
	rdb     redis.UniversalClient
	keys    store.Keys
	maxBody int64
}

// Register installs the actor state routes of the KAR REST API on mux.
//
// Status codes follow KAR 1.3.10: values are answered 200 with their JSON
// text; an absent key is 404, or 200 with an empty body under
// ?nilOnAbsent=true (kar-sdk reads an empty body as undefined); PUT answers
// 201 (with Location) for a new entry and 204 for a replaced one; deletions
// answer 200 with the count deleted as text; HEAD answers 200 or 404.
func Register(mux *http.ServeMux, rdb redis.UniversalClient, keys store.Keys, opts ...Option) {
	s := &server{rdb: rdb, keys: keys, maxBody: DefaultMaxBodyBytes}
	for _, o := range opts {
		o(s)
	}
	const base = "/kar/v1/actor/{type}/{id}/state"
	mux.HandleFunc("GET "+base, s.getAll)
	mux.HandleFunc("POST "+base, s.update)
	mux.HandleFunc("DELETE "+base, s.deleteAll)

	mux.HandleFunc("GET "+base+"/{key}", s.get)
	mux.HandleFunc("HEAD "+base+"/{key}", s.exists)
	mux.HandleFunc("PUT "+base+"/{key}", s.set)
	mux.HandleFunc("DELETE "+base+"/{key}", s.del)
	mux.HandleFunc("POST "+base+"/{key}", s.submapOp)

	mux.HandleFunc("GET "+base+"/{key}/{subkey}", s.get)
	mux.HandleFunc("HEAD "+base+"/{key}/{subkey}", s.exists)
	mux.HandleFunc("PUT "+base+"/{key}/{subkey}", s.set)
	mux.HandleFunc("DELETE "+base+"/{key}/{subkey}", s.del)
}

func (s *server) instance(r *http.Request) instance {
	return instance{rdb: s.rdb, keys: s.keys, typ: r.PathValue("type"), id: r.PathValue("id")}
}

// entry names the hash and field a single-entry route addresses.
func (s *server) entry(r *http.Request) (in instance, hash, field string) {
	in = s.instance(r)
	if sub := r.PathValue("subkey"); sub != "" {
		return in, in.submapKey(r.PathValue("key")), sub
	}
	return in, in.stateKey(), r.PathValue("key")
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	noa, ok := nilOnAbsent(w, r)
	if !ok {
		return
	}
	in, hash, field := s.entry(r)
	v, err := in.get(r.Context(), hash, field)
	switch {
	case errors.Is(err, errAbsent) && noa:
		w.WriteHeader(http.StatusOK)
	case errors.Is(err, errAbsent):
		http.Error(w, "Not Found", http.StatusNotFound)
	case err != nil:
		storeError(w, "read "+describe(r), err)
	default:
		writeJSON(w, []byte(v))
	}
}

func (s *server) exists(w http.ResponseWriter, r *http.Request) {
	in, hash, field := s.entry(r)
	found, err := in.exists(r.Context(), hash, field)
	switch {
	case err != nil:
		storeError(w, "look up "+describe(r), err)
	case found:
		w.WriteHeader(http.StatusOK)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (s *server) set(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, s.maxBody)
	if !ok {
		return
	}
	value, err := compactJSON(body)
	if err != nil {
		http.Error(w, fmt.Sprintf("request body of PUT %s is not a JSON value: %v", describe(r), err), http.StatusBadRequest)
		return
	}
	in := s.instance(r)
	var created bool
	if sub := r.PathValue("subkey"); sub != "" {
		created, err = in.setSub(r.Context(), r.PathValue("key"), sub, value)
	} else {
		created, err = in.set(r.Context(), r.PathValue("key"), value)
	}
	switch {
	case err != nil:
		storeError(w, "write "+describe(r), err)
	case created:
		w.Header().Set("Location", r.URL.EscapedPath())
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *server) del(w http.ResponseWriter, r *http.Request) {
	in := s.instance(r)
	var n int64
	var err error
	if sub := r.PathValue("subkey"); sub != "" {
		n, err = in.delSub(r.Context(), r.PathValue("key"), sub)
	} else {
		n, err = in.del(r.Context(), r.PathValue("key"))
	}
	if err != nil {
		storeError(w, "delete "+describe(r), err)
		return
	}
	writeText(w, http.StatusOK, strconv.FormatInt(n, 10))
}

func (s *server) getAll(w http.ResponseWriter, r *http.Request) {
	m, err := s.instance(r).getAll(r.Context())
	if err != nil {
		storeError(w, "read "+describe(r), err)
		return
	}
	b, err := json.Marshal(m)
	if err != nil {
		http.Error(w, fmt.Sprintf("state of %s holds a value that is not JSON: %v", describe(r), err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, b)
}

func (s *server) deleteAll(w http.ResponseWriter, r *http.Request) {
	n, err := s.instance(r).deleteAll(r.Context())
	if err != nil {
		storeError(w, "delete "+describe(r), err)
		return
	}
	writeText(w, http.StatusOK, strconv.FormatInt(n, 10))
}

func (s *server) update(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, s.maxBody)
	if !ok {
		return
	}
	var op updateOp
	if err := decodeOne(body, &op); err != nil {
		http.Error(w, fmt.Sprintf(`request body of POST %s is not a state update {"updates":{...},"removals":[...],"submapupdates":{...},"submapremovals":{...}}: %v`, describe(r), err), http.StatusBadRequest)
		return
	}
	if err := compactValues(op.Updates); err != nil {
		http.Error(w, fmt.Sprintf("updates: %v", err), http.StatusBadRequest)
		return
	}
	for _, m := range op.SubmapUpdates {
		if err := compactValues(m); err != nil {
			http.Error(w, fmt.Sprintf("submapupdates: %v", err), http.StatusBadRequest)
			return
		}
	}
	res, err := s.instance(r).update(r.Context(), op)
	if err != nil {
		storeError(w, "update "+describe(r), err)
		return
	}
	b, _ := json.Marshal(res)
	writeJSON(w, b)
}

// submapOpBody is the body of POST .../state/{key} (submapOp in the API).
type submapOpBody struct {
	Op string `json:"op"`
}

func (s *server) submapOp(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, s.maxBody)
	if !ok {
		return
	}
	var op submapOpBody
	if err := json.Unmarshal(body, &op); err != nil {
		http.Error(w, fmt.Sprintf(`request body of POST %s is not a sub-map operation {"op": "get"|"keys"|"size"|"clear"}: %v`, describe(r), err), http.StatusBadRequest)
		return
	}
	in, key, ctx := s.instance(r), r.PathValue("key"), r.Context()
	var res any
	var err error
	switch op.Op {
	case "get":
		res, err = in.submapGet(ctx, key)
	case "keys":
		var keys []string
		keys, err = in.submapKeys(ctx, key)
		if keys == nil {
			keys = []string{}
		}
		res = keys
	case "size":
		res, err = in.submapSize(ctx, key)
	case "clear":
		res, err = in.submapClear(ctx, key)
	default:
		http.Error(w, fmt.Sprintf(`unknown sub-map operation %q: use "get", "keys", "size" or "clear"`, op.Op), http.StatusBadRequest)
		return
	}
	if err != nil {
		storeError(w, op.Op+" sub-map "+describe(r), err)
		return
	}
	b, err := json.Marshal(res)
	if err != nil {
		http.Error(w, fmt.Sprintf("sub-map %s holds a value that is not JSON: %v", describe(r), err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, b)
}

// describe names what a request addresses, for error messages.
func describe(r *http.Request) string {
	s := "actor " + r.PathValue("type") + "/" + r.PathValue("id") + " state"
	if k := r.PathValue("key"); k != "" {
		s += " key " + strconv.Quote(k)
	}
	if k := r.PathValue("subkey"); k != "" {
		s += " subkey " + strconv.Quote(k)
	}
	return s
}

func compactJSON(b []byte) ([]byte, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("the body is empty; send a JSON value such as {}, 42 or null")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func compactValues(m map[string]json.RawMessage) error {
	for k, v := range m {
		c, err := compactJSON(v)
		if err != nil {
			return fmt.Errorf("value of %q: %w", k, err)
		}
		m[k] = c
	}
	return nil
}

// decodeOne decodes one JSON value, rejecting trailing data. Unknown
// fields are ignored, as KAR ignores them: its Python SDK's
// actor_state_update sends an object such as {"field1": 43}, which KAR
// answers 200 {"added":0,"removed":0}.
func decodeOne(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errors.New("the body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON object")
	}
	return nil
}
