package reminders

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
)

// Register installs the reminder routes of the KAR REST API on mux.
//
// Status codes follow KAR 1.3.10: GET answers the reminder (or the
// instance's list, possibly []) as JSON; an absent reminder is 404, or 200
// with the body null (GET) or 0 (DELETE) under ?nilOnAbsent=true; PUT
// answers 201 for a new reminder and 204 for a replaced one, 400 with the
// reason for a bad body; DELETE answers the number cancelled as text.
func Register(mux *http.ServeMux, s *Store) {
	const base = "/kar/v1/actor/{type}/{id}/reminders"
	mux.HandleFunc("GET "+base, s.handleList)
	mux.HandleFunc("DELETE "+base, s.handleCancelAll)
	mux.HandleFunc("GET "+base+"/{reminderId}", s.handleGet)
	mux.HandleFunc("PUT "+base+"/{reminderId}", s.handleSchedule)
	mux.HandleFunc("DELETE "+base+"/{reminderId}", s.handleCancel)
}

func actorOf(r *http.Request) Actor {
	return Actor{Type: r.PathValue("type"), ID: r.PathValue("id")}
}

func describe(r *http.Request) string {
	s := "reminders of actor " + r.PathValue("type") + "/" + r.PathValue("id")
	if id := r.PathValue("reminderId"); id != "" {
		s = "reminder " + strconv.Quote(id) + " of actor " + r.PathValue("type") + "/" + r.PathValue("id")
	}
	return s
}

func (s *Store) handleList(w http.ResponseWriter, r *http.Request) {
	list, err := s.List(r.Context(), actorOf(r))
	if err != nil {
		storeError(w, "list "+describe(r), err)
		return
	}
	b, err := json.Marshal(list)
	if err != nil {
		http.Error(w, fmt.Sprintf("cannot encode %s: %v", describe(r), err), http.StatusInternalServerError)
		return
	}
	writeJSON(w, b)
}

func (s *Store) handleCancelAll(w http.ResponseWriter, r *http.Request) {
	n, err := s.CancelAll(r.Context(), actorOf(r))
	if err != nil {
		storeError(w, "cancel "+describe(r), err)
		return
	}
	writeText(w, http.StatusOK, strconv.Itoa(n))
}

func (s *Store) handleGet(w http.ResponseWriter, r *http.Request) {
	noa, ok := nilOnAbsent(w, r)
	if !ok {
		return
	}
	rem, err := s.Get(r.Context(), actorOf(r), r.PathValue("reminderId"))
	switch {
	case errors.Is(err, ErrNotFound) && noa:
		writeJSON(w, []byte("null")) // as KAR 1.3.10: kar-sdk then returns null
	case errors.Is(err, ErrNotFound):
		http.Error(w, "Not Found", http.StatusNotFound)
	case err != nil:
		storeError(w, "read "+describe(r), err)
	default:
		b, err := json.Marshal(rem)
		if err != nil {
			http.Error(w, fmt.Sprintf("cannot encode %s: %v", describe(r), err), http.StatusInternalServerError)
			return
		}
		writeJSON(w, b)
	}
}

func (s *Store) handleSchedule(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, s.opts.MaxBodyBytes)
	if !ok {
		return
	}
	rem, err := ParseSchedule(actorOf(r), r.PathValue("reminderId"), body)
	if err != nil {
		http.Error(w, fmt.Sprintf("cannot schedule %s: %v", describe(r), err), http.StatusBadRequest)
		return
	}
	created, err := s.Schedule(r.Context(), rem)
	switch {
	case err != nil:
		storeError(w, "schedule "+describe(r), err)
	case created:
		w.WriteHeader(http.StatusCreated)
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

func (s *Store) handleCancel(w http.ResponseWriter, r *http.Request) {
	noa, ok := nilOnAbsent(w, r)
	if !ok {
		return
	}
	err := s.Cancel(r.Context(), actorOf(r), r.PathValue("reminderId"))
	switch {
	case errors.Is(err, ErrNotFound) && noa:
		writeText(w, http.StatusOK, "0")
	case errors.Is(err, ErrNotFound):
		http.Error(w, "Not Found", http.StatusNotFound)
	case err != nil:
		storeError(w, "cancel "+describe(r), err)
	default:
		writeText(w, http.StatusOK, "1")
	}
}
