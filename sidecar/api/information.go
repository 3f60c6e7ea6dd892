package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/mesh"
)

// GET /kar/v1/system/information/{component}, in KAR 1.3.10's shapes
// (kar-sdk's sys.get and the Java SDK's Sys.information call it):
//
//	id              {"id": "<this sidecar>"}             text: the id and a newline
//	sidecars        {"<id>": {"port", "actors", "services", ...}}
//	actors          {"<type>": ["<id>", ...]}  active instances of the application
//	sidecar_actors  the same, for the instances this sidecar hosts
//
// JSON when the request accepts application/json (or ?format=json), else
// KAR's text. An instance is active while it has a placement on a live
// sidecar: kar drops the placement when it deactivates an instance.

func (s *Server) information(w http.ResponseWriter, r *http.Request) {
	if !s.waitReady(w, r) {
		return
	}
	asJSON := strings.Contains(r.Header.Get("Accept"), "application/json") || r.URL.Query().Get("format") == "json"
	var out strings.Builder
	switch c := r.PathValue("component"); c {
	case "id":
		if asJSON {
			b, _ := json.Marshal(map[string]string{"id": s.Mesh.ID()})
			out.Write(b)
		} else {
			out.WriteString(s.Mesh.ID() + "\n")
		}
	case "sidecars", "Sidecars":
		WriteSidecars(&out, s.Mesh.Members(), asJSON)
	case "actors", "Actors", "sidecar_actors":
		live := map[string]bool{}
		for _, m := range s.Mesh.Members() {
			live[m.ID] = true
		}
		if c == "sidecar_actors" {
			live = map[string]bool{s.Mesh.ID(): true}
		}
		if s.Redis == nil {
			text(w, http.StatusServiceUnavailable, "this sidecar keeps no actor placements")
			return
		}
		placed, err := Placements(r.Context(), s.Redis, s.Keys, "")
		if err != nil {
			text(w, http.StatusServiceUnavailable, fmt.Sprintf("cannot read the actor placements now: %v; retry later", err))
			return
		}
		WriteActors(&out, ActorsOn(placed, live), asJSON)
	default:
		text(w, http.StatusBadRequest, fmt.Sprintf("Invalid information query: %v (want id, sidecars, actors or sidecar_actors)", c))
		return
	}
	// KAR's Content-Types, without a charset.
	if asJSON {
		w.Header().Set("Content-Type", "application/json")
	} else {
		w.Header().Set("Content-Type", "text/plain")
	}
	io.WriteString(w, out.String())
}

// SidecarEntry is one live sidecar as the information routes show it: KAR's
// fields (port, actors, services) and kar's (host, partition, started, client).
type SidecarEntry struct {
	Port      int       `json:"port"`
	Actors    []string  `json:"actors"`
	Services  []string  `json:"services"`
	Host      string    `json:"host,omitempty"`
	Partition int32     `json:"partition"`
	Started   time.Time `json:"started"`
	Client    bool      `json:"client,omitempty"`
}

// SidecarInfo maps sidecar ids to what they serve.
func SidecarInfo(members []*mesh.Member) map[string]SidecarEntry {
	out := map[string]SidecarEntry{}
	for _, m := range members {
		out[m.ID] = SidecarEntry{Port: m.Port, Actors: nonNil(m.Actors), Services: nonNil(m.Services),
			Host: m.Host, Partition: m.Partition, Started: m.Started, Client: m.Client}
	}
	return out
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// WriteSidecars writes the live sidecars as JSON, or as KAR's text:
// a header, then per sidecar "id:port", its actor types and its services.
func WriteSidecars(w io.Writer, members []*mesh.Member, asJSON bool) {
	info := SidecarInfo(members)
	if asJSON {
		b, _ := json.Marshal(info)
		w.Write(b)
		return
	}
	io.WriteString(w, "\nSidecar\n : Actors\n : Services")
	for _, id := range slices.Sorted(maps.Keys(info)) {
		e := info[id]
		fmt.Fprintf(w, "\n%v:%v\n : %v\n : %v", id, e.Port, e.Actors, e.Services)
	}
	io.WriteString(w, "\n")
}

// Placements reads every actor placement of the application (of one type
// when actorType is not empty): host sidecar → actor type → ids.
func Placements(ctx context.Context, rdb redis.UniversalClient, keys store.Keys, actorType string) (map[string]map[string][]string, error) {
	names, err := store.ScanKeys(ctx, rdb, keys.PlacementPattern())
	if err != nil {
		return nil, fmt.Errorf("list placements: %w", err)
	}
	out := map[string]map[string][]string{}
	for len(names) > 0 {
		batch := names[:min(len(names), 500)]
		names = names[len(batch):]
		hosts, err := store.GetMany(ctx, rdb, batch)
		if err != nil {
			return nil, fmt.Errorf("read placements: %w", err)
		}
		for i, h := range hosts {
			host, ok := h.(string)
			typ, id, ok2 := keys.ParseActor(batch[i])
			if !ok || !ok2 || (actorType != "" && typ != actorType) {
				continue
			}
			if out[host] == nil {
				out[host] = map[string][]string{}
			}
			out[host][typ] = append(out[host][typ], id)
		}
	}
	return out, nil
}

// ActorsOn merges the placements on the hosts that hosts holds (nil: all
// hosts) into actor type → sorted ids.
func ActorsOn(placed map[string]map[string][]string, hosts map[string]bool) map[string][]string {
	out := map[string][]string{}
	for host, types := range placed {
		if hosts != nil && !hosts[host] {
			continue
		}
		for typ, ids := range types {
			out[typ] = append(out[typ], ids...)
		}
	}
	for _, ids := range out {
		slices.Sort(ids)
	}
	return out
}

// WriteActors writes actor type → ids as KAR does: indented JSON, or per
// type "Type: [", one id a line, "]".
func WriteActors(w io.Writer, actors map[string][]string, asJSON bool) {
	if asJSON {
		b, _ := json.MarshalIndent(actors, "", "  ")
		w.Write(b)
		return
	}
	for _, t := range slices.Sorted(maps.Keys(actors)) {
		fmt.Fprintf(w, "%v: [\n", t)
		for _, id := range actors[t] {
			fmt.Fprintf(w, "    %v\n", id)
		}
		io.WriteString(w, "]\n")
	}
}
