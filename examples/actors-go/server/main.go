// Command server hosts the actor type Counter with nothing but net/http: it
// implements the actor-runtime side of kar's REST API (/kar/impl/v1/actor/...)
// that the sidecar calls, and keeps each counter's value in actor state
// through the sidecar (/kar/v1/actor/Counter/{id}/state/...).
//
//	kar run -app counter -actors Counter go run ./server
//
// Methods, called with a JSON array of arguments:
//
//	incr [n]  adds n (default 1) and returns the new value
//	get       returns the value (0 when never set)
//	reset     removes the value; returns nothing (204)
//	fail      answers with an actor error, as a thrown exception would
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"
)

const actorType = "Counter"

// runtime is the sidecar's REST API as seen from this component.
type runtime struct {
	base   string // http://127.0.0.1:$KAR_RUNTIME_PORT/kar/v1
	client *http.Client
}

// stateURL is the URL of key in the actor state of Counter id.
func (rt runtime) stateURL(id, key string) string {
	return fmt.Sprintf("%s/actor/%s/%s/state/%s", rt.base, actorType, id, key)
}

// loadCount reads key "count" of Counter id; absent is 0.
func (rt runtime) loadCount(id string) (int, error) {
	resp, err := rt.client.Get(rt.stateURL(id, "count") + "?nilOnAbsent=true")
	if err != nil {
		return 0, fmt.Errorf("reading the state of %s %s: %w", actorType, id, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("reading the state of %s %s: %s: %s", actorType, id, resp.Status, body)
	}
	var n *int // the sidecar answers an absent key with an empty body or null
	if len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &n); err != nil {
			return 0, fmt.Errorf("state of %s %s is not a number: %q", actorType, id, body)
		}
	}
	if n == nil {
		return 0, nil
	}
	return *n, nil
}

func (rt runtime) storeCount(id string, n int) error {
	req, _ := http.NewRequest(http.MethodPut, rt.stateURL(id, "count"), bytes.NewReader([]byte(strconv.Itoa(n))))
	req.Header.Set("Content-Type", "application/json")
	return rt.do(req, "writing the state of "+actorType+" "+id)
}

func (rt runtime) removeCount(id string) error {
	req, _ := http.NewRequest(http.MethodDelete, rt.stateURL(id, "count"), nil)
	return rt.do(req, "removing the state of "+actorType+" "+id)
}

func (rt runtime) do(req *http.Request, what string) error {
	resp, err := rt.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s: %s", what, resp.Status, body)
	}
	return nil
}

// host holds the active Counter instances. The sidecar runs one method at
// a time per instance, but different instances run concurrently.
type host struct {
	rt     runtime
	log    *slog.Logger
	mu     sync.Mutex
	active map[string]*int // id -> cached value, loaded at activation
}

func (h *host) instance(id string) (*int, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	c, ok := h.active[id]
	return c, ok
}

// activate loads the instance's state: GET /kar/impl/v1/actor/{type}/{id}.
func (h *host) activate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !h.knownType(w, r) {
		return
	}
	if _, ok := h.instance(id); ok {
		http.Error(w, "existing instance", http.StatusOK)
		return
	}
	n, err := h.rt.loadCount(id)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	h.mu.Lock()
	h.active[id] = &n
	h.mu.Unlock()
	h.log.Info("activated", "id", id, "count", n)
	w.WriteHeader(http.StatusCreated)
}

// deactivate drops the cached instance: DELETE /kar/impl/v1/actor/{type}/{id}.
func (h *host) deactivate(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !h.knownType(w, r) {
		return
	}
	h.mu.Lock()
	_, ok := h.active[id]
	delete(h.active, id)
	h.mu.Unlock()
	if !ok {
		http.Error(w, fmt.Sprintf("no actor with type %s and id %s", actorType, id), http.StatusNotFound)
		return
	}
	h.log.Info("deactivated", "id", id)
	w.WriteHeader(http.StatusOK)
}

// invoke runs a method: POST /kar/impl/v1/actor/{type}/{id}/{method}.
func (h *host) invoke(w http.ResponseWriter, r *http.Request) {
	id, method := r.PathValue("id"), r.PathValue("method")
	if !h.knownType(w, r) {
		return
	}
	count, ok := h.instance(id)
	if !ok {
		http.Error(w, fmt.Sprintf("no actor with type %s and id %s", actorType, id), http.StatusNotFound)
		return
	}
	var args []json.RawMessage
	if body, _ := io.ReadAll(r.Body); len(bytes.TrimSpace(body)) > 0 {
		if err := json.Unmarshal(body, &args); err != nil {
			actorError(w, fmt.Errorf("%s.%s: arguments must be a JSON array: %w", actorType, method, err))
			return
		}
	}
	switch method {
	case "incr":
		by := 1
		if len(args) > 0 {
			if err := json.Unmarshal(args[0], &by); err != nil {
				actorError(w, fmt.Errorf("incr: the argument must be an integer, got %s", args[0]))
				return
			}
		}
		if err := h.rt.storeCount(id, *count+by); err != nil {
			actorError(w, err)
			return
		}
		*count += by
		actorValue(w, *count)
	case "get":
		actorValue(w, *count)
	case "reset":
		if err := h.rt.removeCount(id); err != nil {
			actorError(w, err)
			return
		}
		*count = 0
		w.WriteHeader(http.StatusNoContent)
	case "fail":
		actorError(w, errors.New("Counter.fail: failing as asked"))
	default:
		http.Error(w, fmt.Sprintf("no %s in actor with type %s and id %s", method, actorType, id), http.StatusNotFound)
	}
}

// knownType answers 404 for an actor type this component does not host.
func (h *host) knownType(w http.ResponseWriter, r *http.Request) bool {
	if t := r.PathValue("type"); t != actorType {
		http.Error(w, "no actor type "+t, http.StatusNotFound)
		return false
	}
	return true
}

// actorValue is a method's result: {"value": v} as application/kar+json.
func actorValue(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/kar+json")
	json.NewEncoder(w).Encode(map[string]any{"value": v})
}

// actorError is a method's failure. It is a 200: the method ran and threw;
// the caller's SDK turns it back into an error.
func actorError(w http.ResponseWriter, err error) {
	w.Header().Set("Content-Type", "application/kar+json")
	json.NewEncoder(w).Encode(map[string]any{"error": true, "message": err.Error(), "stack": "Error: " + err.Error() + "\n    at <go> " + actorType})
}

func main() {
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	runtimePort, appPort := os.Getenv("KAR_RUNTIME_PORT"), os.Getenv("KAR_APP_PORT")
	if runtimePort == "" || appPort == "" {
		log.Error("KAR_RUNTIME_PORT and KAR_APP_PORT must be set: start me with kar run -actors Counter")
		os.Exit(1)
	}
	h := &host{
		rt:     runtime{base: "http://127.0.0.1:" + runtimePort + "/kar/v1", client: &http.Client{Timeout: 30 * time.Second}},
		log:    log,
		active: map[string]*int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("HEAD /kar/impl/v1/actor/{type}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("type") != actorType {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	mux.HandleFunc("GET /kar/impl/v1/actor/{type}/{id}", h.activate)
	mux.HandleFunc("DELETE /kar/impl/v1/actor/{type}/{id}", h.deactivate)
	mux.HandleFunc("POST /kar/impl/v1/actor/{type}/{id}/{method}", h.invoke)
	mux.HandleFunc("GET /kar/impl/v1/system/health", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("OK"))
	})
	log.Info("Counter actors listening", "port", appPort)
	if err := http.ListenAndServe("127.0.0.1:"+appPort, mux); err != nil {
		log.Error("serving", "err", err)
		os.Exit(1)
	}
}
