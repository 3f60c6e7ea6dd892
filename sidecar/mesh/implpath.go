package mesh

import (
	"net/http"
	"strings"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// The component's actor routes (kar-rest-api.swagger.yaml, /impl/v1):
//
//	GET|DELETE /kar/impl/v1/actor/{type}/{id}   activate, deactivate
//	POST       /kar/impl/v1/actor/{type}/{id}/{method}
//
// Every name is one path segment there. The sidecar builds these paths
// here only, so that no name can add a segment ("a/b"), climb out of the
// route (".."), or start a query ("?"): names are percent-encoded, dot
// segments included, and names that no router keeps in one segment are
// refused (httpx.CheckName, httpx.CheckMethod).

const implActorPrefix = "/kar/impl/v1/actor/"

// ImplInstancePath is the path that activates (GET) or deactivates
// (DELETE) an actor instance on its component.
func ImplInstancePath(actorType, id string) (string, error) {
	if err := httpx.CheckName("actor type", actorType); err != nil {
		return "", err
	}
	if err := httpx.CheckName("actor id", id); err != nil {
		return "", err
	}
	return implActorPrefix + httpx.EscapeSegment(actorType) + "/" + httpx.EscapeSegment(id), nil
}

// ImplPath is the path that invokes method on an actor instance.
func ImplPath(actorType, id, method string) (string, error) {
	if err := httpx.CheckName("actor type", actorType); err != nil {
		return "", err
	}
	if err := httpx.CheckName("actor id", id); err != nil {
		return "", err
	}
	if err := httpx.CheckMethod(method); err != nil {
		return "", err
	}
	// Built in one piece: every actor call makes one (concatenating the
	// instance path first was two allocations).
	t, i, m := httpx.EscapeSegment(actorType), httpx.EscapeSegment(id), httpx.EscapeSegment(method)
	var b strings.Builder
	b.Grow(len(implActorPrefix) + len(t) + len(i) + len(m) + 2)
	b.WriteString(implActorPrefix)
	b.WriteString(t)
	b.WriteByte('/')
	b.WriteString(i)
	b.WriteByte('/')
	b.WriteString(m)
	return b.String(), nil
}

// implPaths returns the instance path of an actor request and, unless it
// is a DELETE, the path of its method (env.Path is "/" and the method).
// A request whose names cannot be represented (a tail call, a reminder or
// an event may carry any) gets a 400 answer instead, and nothing is sent
// to the component.
func implPaths(env *Envelope) (base, method string, refused *Envelope) {
	var err error
	if env.Method == http.MethodDelete {
		base, err = ImplInstancePath(env.ActorType, env.ActorID)
	} else if method, err = ImplPath(env.ActorType, env.ActorID, strings.TrimPrefix(env.Path, "/")); err == nil {
		base = method[:strings.LastIndexByte(method, '/')]
	}
	if err != nil {
		return "", "", &Envelope{Status: http.StatusBadRequest, Error: true, Body: []byte(err.Error())}
	}
	return base, method, nil
}
