package api

import (
	"context"
	"fmt"
	"net/http"
	"time"

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
	if !s.waitReady(w, r) {
		return
	}
	body, ok := ReadBody(w, r)
	if !ok {
		return
	}
	if len(body) == 0 {
		body = []byte("[]")
	}
	session := ""
	if r.URL.RawQuery != "" {
		session = r.URL.Query().Get("session")
	}
	// No header: the host's sidecar gives the method call its
	// Content-Type (a header map per call was a tenth of this handler's
	// allocations).
	req := &mesh.Envelope{
		ActorType: r.PathValue("type"),
		ActorID:   r.PathValue("id"),
		Session:   session,
		Method:    http.MethodPost,
		Path:      "/" + r.PathValue("method"),
		Body:      body,
	}
	s.Dispatch(w, r, req)
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
	text(w, http.StatusOK, "OK")
}
