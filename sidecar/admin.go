package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/api"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/mesh"
	"github.com/redis/go-redis/v9"
)

// Invoke is `kar invoke TYPE ID METHOD [ARGS...]`: one actor call; each
// argument is taken as JSON when it parses, else as a string.
func Invoke(ctx context.Context, cfg *config.Client, args []string, stdout, stderr io.Writer) int {
	if len(args) < 3 {
		fmt.Fprintln(stderr, "kar invoke: usage: kar invoke -app A TYPE ID METHOD [ARGS...]")
		return ExitConfig
	}
	params := make([]json.RawMessage, 0, len(args)-3)
	for _, a := range args[3:] {
		if json.Valid([]byte(a)) {
			params = append(params, json.RawMessage(a))
		} else {
			b, _ := json.Marshal(a)
			params = append(params, b)
		}
	}
	body, _ := json.Marshal(params)
	o, err := JoinOneShot(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "kar invoke:", err)
		return ExitConfig
	}
	defer o.Close()
	if cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.RequestTimeout)
		defer cancel()
	}
	resp, err := o.Mesh.Call(ctx, &mesh.Envelope{
		ActorType: args[0], ActorID: args[1], Method: http.MethodPost, Path: "/" + args[2],
		Header: http.Header{"Content-Type": {"application/kar+json"}}, Body: body,
	})
	if err != nil {
		fmt.Fprintf(stderr, "kar invoke: %s/%s.%s: %v\n", args[0], args[1], args[2], err)
		return ExitFailure
	}
	if resp.Status == http.StatusNoContent {
		return 0
	}
	var result struct {
		Error   bool            `json:"error"`
		Message string          `json:"message"`
		Value   json.RawMessage `json:"value"`
	}
	if resp.Status != http.StatusOK || json.Unmarshal(resp.Body, &result) != nil {
		fmt.Fprintf(stderr, "kar invoke: %s/%s.%s answered %d: %s\n", args[0], args[1], args[2], resp.Status, strings.TrimSpace(string(resp.Body)))
		return ExitFailure
	}
	if result.Error {
		fmt.Fprintf(stderr, "kar invoke: %s/%s.%s threw: %s\n", args[0], args[1], args[2], result.Message)
		return ExitFailure
	}
	fmt.Fprintln(stdout, string(result.Value))
	return 0
}

// Admin is the configuration of kar get, purge and drain.
type Admin struct {
	config.Client
	System       string `flag:"s" default:"sidecars" desc:"what to show: sidecars or actors (kar get)"`
	ActorType    string `flag:"t" desc:"only actors of this type (kar get)"`
	ActorID      string `flag:"i" desc:"only the actor with this id, with its state (kar get)"`
	ResidentOnly bool   `flag:"mr" desc:"only actors resident in a live sidecar now (kar get)"`
	Force        bool   `flag:"force" desc:"purge or drain even while sidecars of the application run"`
}

func adminRedis(ctx context.Context, cfg *Admin) (*redis.Client, store.Keys, error) {
	if err := cfg.Client.Validate(); err != nil {
		return nil, store.Keys{}, err
	}
	if log, err := NewLogger(cfg.Verbose, io.Discard); err == nil {
		store.RouteLogs(log)
	}
	rdb, err := store.Connect(ctx, cfg.Backend)
	return rdb, store.NewKeys(cfg.App), err
}

// Get is `kar get`: the live sidecars, or the actors, of an application.
func Get(ctx context.Context, cfg *Admin, stdout, stderr io.Writer) int {
	rdb, keys, err := adminRedis(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "kar get:", err)
		return ExitConfig
	}
	defer rdb.Close()
	members, err := mesh.LoadMembers(ctx, rdb, keys)
	if err != nil {
		fmt.Fprintln(stderr, "kar get:", err)
		return ExitFailure
	}
	switch cfg.System {
	case "sidecars", "sidecar":
		if cfg.Output == "json" {
			json.NewEncoder(stdout).Encode(api.SidecarInfo(members))
			return 0
		}
		api.WriteSidecarTable(stdout, members)
		return 0
	case "actors", "actor":
	default:
		fmt.Fprintf(stderr, "kar get: -s %q: want sidecars or actors\n", cfg.System)
		return ExitConfig
	}
	live := map[string]bool{}
	for _, m := range members {
		live[m.ID] = true
	}
	type actorRow struct {
		Type  string          `json:"type"`
		ID    string          `json:"id"`
		Host  string          `json:"host,omitempty"`
		State json.RawMessage `json:"state,omitempty"`
	}
	rows := map[string]*actorRow{}
	add := func(key, prefix string) *actorRow {
		rest := strings.TrimPrefix(key, prefix)
		typ, id, ok := store.SplitActor(rest)
		if !ok || (cfg.ActorType != "" && typ != cfg.ActorType) || (cfg.ActorID != "" && id != cfg.ActorID) {
			return nil
		}
		r := rows[rest]
		if r == nil {
			r = &actorRow{Type: typ, ID: id}
			rows[rest] = r
		}
		return r
	}
	placements, err := scanAll(ctx, rdb, keys.PlacementPrefix()+"*")
	if err == nil {
		for _, k := range placements {
			if r := add(k, keys.PlacementPrefix()); r != nil {
				if host, _ := rdb.Get(ctx, k).Result(); live[host] {
					r.Host = host
				}
			}
		}
	}
	if !cfg.ResidentOnly && err == nil {
		var states []string
		if states, err = scanAll(ctx, rdb, keys.StatePrefix()+"*"); err == nil {
			for _, k := range states {
				add(k, keys.StatePrefix())
			}
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "kar get:", err)
		return ExitFailure
	}
	var out []*actorRow
	for _, r := range rows {
		if cfg.ResidentOnly && r.Host == "" {
			continue
		}
		if cfg.ActorID != "" {
			if st, err := rdb.HGetAll(ctx, keys.ActorState(r.Type, r.ID)).Result(); err == nil && len(st) > 0 {
				m := map[string]json.RawMessage{}
				for k, v := range st {
					m[k] = json.RawMessage(v)
				}
				r.State, _ = json.Marshal(m)
			}
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Type != out[j].Type {
			return out[i].Type < out[j].Type
		}
		return out[i].ID < out[j].ID
	})
	if cfg.Output == "json" {
		if out == nil {
			out = []*actorRow{}
		}
		json.NewEncoder(stdout).Encode(out)
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tID\tRESIDENT ON\tSTATE")
	for _, r := range out {
		host := r.Host
		if host == "" {
			host = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Type, r.ID, host, string(r.State))
	}
	tw.Flush()
	return 0
}

func scanAll(ctx context.Context, rdb *redis.Client, pattern string) ([]string, error) {
	var keys []string
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	return keys, iter.Err()
}

// Purge is `kar purge`: every key and topic of the application goes
// (state, reminders, subscriptions, messages). Drain is `kar drain`: only
// the messages in flight go, the application's state stays. Both refuse
// while sidecars of the application run, unless -force.
func Purge(ctx context.Context, cfg *Admin, drain bool, stdout, stderr io.Writer) int {
	name := "purge"
	if drain {
		name = "drain"
	}
	rdb, keys, err := adminRedis(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return ExitConfig
	}
	defer rdb.Close()
	members, err := mesh.LoadMembers(ctx, rdb, keys)
	if err != nil {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return ExitFailure
	}
	if len(members) > 0 && !cfg.Force {
		fmt.Fprintf(stderr, "kar %s: %d sidecar(s) of application %s are running; stop them first (see `kar get -app %s`), or give -force\n", name, len(members), cfg.App, cfg.App)
		return ExitConfig
	}
	kc, err := kafka.Connect(ctx, cfg.Backend, cfg.App)
	if err != nil {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return ExitConfig
	}
	defer kc.Close()
	patterns := []string{keys.Pattern()}
	// Only kar's own topics go: user event topics are plain Kafka topics,
	// possibly shared with other applications and other Kafka clients.
	topics := []string{kafka.Topic(cfg.App)}
	if drain {
		patterns = keys.Runtime()
	} else {
		topics = append(topics, kafka.DeadLetterTopic(cfg.App))
	}
	n := 0
	for _, p := range patterns {
		ks, err := scanAll(ctx, rdb, p)
		if err != nil {
			fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
			return ExitFailure
		}
		for len(ks) > 0 {
			batch := ks[:min(len(ks), 500)]
			ks = ks[len(batch):]
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
				return ExitFailure
			}
			n += len(batch)
		}
	}
	if err := kc.DeleteTopics(topics...); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return ExitFailure
	}
	fmt.Fprintf(stdout, "kar %s: application %s: removed %d Redis keys and the topics %s\n", name, cfg.App, n, strings.Join(topics, ", "))
	return 0
}
