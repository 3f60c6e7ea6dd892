package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// componentEnv, set to 1 in its environment, makes this binary the
// benchmark's component instead of the benchmark.
const componentEnv = "SCALE_BENCH_COMPONENT"

// component is the tiny component every `kar run` of the benchmark
// launches: it echoes service calls and hosts one actor type whose
// methods are
//
//	touch  nothing (the cheapest method)
//	set    writes one state key through its sidecar (an actor call with state)
//	fire   a reminder's target: records how late it came (its argument is the target, Unix ms)
//	on     an event delivery: counts it
//
// GET /scale/stats answers what it counted.
type component struct {
	runtime     string
	client      *http.Client
	activated   atomic.Int64
	deactivated atomic.Int64
	events      atomic.Int64
	mu          sync.Mutex
	late        []float64 // ms
}

// Stats is what a component counted.
type Stats struct {
	Activated   int64     `json:"activated"`
	Deactivated int64     `json:"deactivated"`
	Events      int64     `json:"events"`
	LateMs      []float64 `json:"lateMs"`
}

func serveComponent() error {
	c := &component{runtime: "http://127.0.0.1:" + os.Getenv("KAR_RUNTIME_PORT"),
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) {
		c.activated.Add(1)
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("DELETE /kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) {
		c.deactivated.Add(1)
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /kar/impl/v1/actor/{type}/{id}/{method}", c.method)
	mux.HandleFunc("GET /scale/stats", func(w http.ResponseWriter, r *http.Request) {
		c.mu.Lock()
		s := Stats{Activated: c.activated.Load(), Deactivated: c.deactivated.Load(), Events: c.events.Load(), LateMs: append([]float64(nil), c.late...)}
		c.mu.Unlock()
		json.NewEncoder(w).Encode(s)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	})
	srv := &http.Server{Addr: "127.0.0.1:" + os.Getenv("KAR_APP_PORT"), Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return srv.ListenAndServe()
}

func (c *component) method(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	switch r.PathValue("method") {
	case "set":
		url := c.runtime + "/kar/v1/actor/" + r.PathValue("type") + "/" + r.PathValue("id") + "/state/k"
		req, _ := http.NewRequest(http.MethodPut, url, strings.NewReader(`1`))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	case "fire":
		// The body is the reminder's data as an argument list: [target ms].
		var args []float64
		if json.Unmarshal(b, &args) == nil && len(args) > 0 {
			late := float64(time.Now().UnixMicro())/1000 - args[0]
			c.mu.Lock()
			c.late = append(c.late, late)
			c.mu.Unlock()
		}
	case "on":
		c.events.Add(1)
	}
	w.Header().Set("Content-Type", "application/kar+json")
	fmt.Fprint(w, `{"value":1}`)
}

// componentStats reads a component's counts.
func (e *Env) componentStats(p *Proc) (Stats, error) {
	var s Stats
	b, err := e.Do(http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(p.AppPort)+"/scale/stats", "", "")
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}
