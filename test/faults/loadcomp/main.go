// Command loadcomp is the component of the fault tests: it serves the
// service path /work and the actor type Worker (method work) and appends
// the id of every request it completes to a file, one line each, so that
// a test counts how many times each request was executed.
//
//	kar run -app A -service work -actors Worker -- loadcomp -log executed.log
//
// A request's body is {"id": "...", "ms": N} (for the actor, a one-element
// JSON array of it): the component waits N ms, records the id, and answers
// with the id. An id is recorded only once its execution completed, so an
// execution cut short by a kill does not count: its redelivery must.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

const actorType = "Worker"

// work is a request's body.
type work struct {
	ID string `json:"id"`
	MS int    `json:"ms"`
}

// recorder appends ids to the log file, one write per id (O_APPEND: the
// lines of concurrent requests do not mix).
type recorder struct {
	mu sync.Mutex
	f  *os.File
}

func (r *recorder) record(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := r.f.WriteString(id + "\n")
	return err
}

func (r *recorder) run(w work) error {
	if w.ID == "" || strings.ContainsAny(w.ID, "\n\r") {
		return fmt.Errorf("bad id %q", w.ID)
	}
	time.Sleep(time.Duration(w.MS) * time.Millisecond)
	return r.record(w.ID)
}

func main() {
	logPath := flag.String("log", "", "file to append executed request ids to (required)")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *logPath == "" {
		log.Error("-log is required")
		os.Exit(2)
	}
	f, err := os.OpenFile(*logPath, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		log.Error("cannot open the log", "err", err)
		os.Exit(1)
	}
	rec := &recorder{f: f}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /work", func(w http.ResponseWriter, r *http.Request) {
		var body work
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := rec.run(body); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{"id": body.ID})
	})
	mux.HandleFunc("HEAD /kar/impl/v1/actor/{type}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("type") != actorType {
			w.WriteHeader(http.StatusNotFound)
		}
	})
	mux.HandleFunc("GET /kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusCreated)
	})
	mux.HandleFunc("DELETE /kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /kar/impl/v1/actor/{type}/{id}/{method}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("type") != actorType || r.PathValue("method") != "work" {
			http.Error(w, "no such actor type or method", http.StatusNotFound)
			return
		}
		var args []work
		if err := json.NewDecoder(r.Body).Decode(&args); err != nil || len(args) != 1 {
			http.Error(w, fmt.Sprintf("want one argument: %v", err), http.StatusBadRequest)
			return
		}
		if err := rec.run(args[0]); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/kar+json")
		json.NewEncoder(w).Encode(map[string]string{"value": args[0].ID})
	})
	mux.HandleFunc("GET /kar/impl/v1/system/health", func(w http.ResponseWriter, r *http.Request) {})

	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("KAR_APP_PORT"))
	if err != nil {
		log.Error("cannot listen", "err", err)
		os.Exit(1)
	}
	fmt.Println("loadcomp listening on", ln.Addr())
	if err := http.Serve(ln, mux); err != nil {
		log.Error("serve", "err", err)
		os.Exit(1)
	}
}
