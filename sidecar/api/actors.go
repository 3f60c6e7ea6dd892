package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/mesh"
)

// ActorCleanup removes what an actor instance owns besides its placement
// (state, reminders, subscriptions) when DELETE /kar/v1/actor/{type}/{id}
// is called.
type ActorCleanup func(ctx context.Context, actorType, id string) error

func (s *Server) actorRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /kar/v1/actor/{type}/{id}/call/{method...}", s.actorCall)
	mux.HandleFunc("DELETE /kar/v1/actor/{type}/{id}", s.actorDelete)
}

func (s *Server) actorCall(w http.ResponseWriter, r *http.Request) {
	s.callActor(w, r, r.PathValue("type"), r.PathValue("id"), r.PathValue("method"))
}

// callActor serves a call of method on actor typ/id (the path values).
func (s *Server) callActor(w http.ResponseWriter, r *http.Request, typ, id, method string) {
	if err := httpx.CheckMethod(method); err != nil {
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	session := ""
	if r.URL.RawQuery != "" {
		session = r.URL.Query().Get("session")
		if err := httpx.CheckName("session", session); session != "" && err != nil {
			text(w, http.StatusBadRequest, err.Error())
			return
		}
	}
	if !s.waitReady(w, r) {
		return
	}
	body, ok := ReadBody(w, r)
	if !ok {
		return
	}
	if len(body) == 0 {
		body = []byte("[]")
	} else if err := checkArgs(body); err != nil {
		text(w, http.StatusBadRequest, err.Error())
		return
	}
	// No header: the host's sidecar gives the method call its
	// Content-Type (a header map per call was a tenth of this handler's
	// allocations).
	req := &mesh.Envelope{
		ActorType: typ,
		ActorID:   id,
		Session:   session,
		Method:    http.MethodPost,
		Path:      slashed(r.URL.Path, method),
		Body:      body,
	}
	s.Dispatch(w, r, req)
}

// slashed is "/" + name, taken from the end of path when it is there (no
// new string).
func slashed(path, name string) string {
	if n := len(path) - len(name); n > 0 && path[n-1] == '/' && path[n:] == name {
		return path[n-1:]
	}
	return "/" + name
}

// checkArgs checks that the arguments of an actor method are a JSON array
// (the component spreads them into the method's parameters).
func checkArgs(body []byte) error {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 || trimmed[0] != '[' {
		return errors.New("the arguments of an actor method must be a JSON array, such as [] or [1, \"two\"]")
	}
	if !json.Valid(trimmed) {
		// The decoder says where (json.Valid, cheaper, does not).
		err := json.Unmarshal(trimmed, new(any))
		return fmt.Errorf("the arguments of an actor method are not valid JSON (%v): send a JSON array, such as [] or [1, \"two\"]", err)
	}
	return nil
}

func (s *Server) actorDelete(w http.ResponseWriter, r *http.Request) {
	if !s.waitReady(w, r) {
		return
	}
	typ, id := r.PathValue("type"), r.PathValue("id")
	ctx := r.Context()
	placed, err := s.Mesh.Placed(ctx, typ, id)
	if err != nil {
		text(w, http.StatusServiceUnavailable, "cannot reach Redis: "+err.Error())
		return
	}
	if placed {
		// The host deactivates the instance and gives up its placement.
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		resp, err := s.Mesh.Call(cctx, &mesh.Envelope{ActorType: typ, ActorID: id, Method: http.MethodDelete, Deadline: time.Now().Add(10 * time.Second).UnixMilli()})
		if err != nil {
			s.sendError(w, &mesh.Envelope{ActorType: typ, ActorID: id}, err)
			return
		}
		if resp.Status >= 300 {
			WriteResponse(w, resp)
			return
		}
	}
	if s.ActorCleanup != nil {
		if err := s.ActorCleanup(ctx, typ, id); err != nil {
			text(w, http.StatusServiceUnavailable, fmt.Sprintf("cannot remove the state of actor %s/%s: %v", typ, id, err))
			return
		}
	}
	// KAR answers 202: the instance and its state are gone, its host
	// forgets it.
	text(w, http.StatusAccepted, "Accepted")
}
