package sidecar

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/actorstate"
	"github.com/kar-runtime/kar/sidecar/api"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/mesh"
	"github.com/redis/go-redis/v9"
)

// Invoke is `kar invoke TYPE ID METHOD [ARGS...]`: one actor call; each
// argument is taken as JSON when it parses, else as a string. The answer
// is printed as KAR prints it (printAsKAR); with -o json the result's JSON
// value, and an exception or error status exits 1.
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
		Header: httpx.Fields{"Content-Type", "application/kar+json"}, Body: body,
	})
	if err != nil {
		fmt.Fprintf(stderr, "kar invoke: %s/%s.%s: %v\n", args[0], args[1], args[2], err)
		return ExitFailure
	}
	if !strings.EqualFold(cfg.Output, "json") {
		printAsKAR(resp, "Method completed normally with void result.", stdout, stderr)
		return 0
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
	System       string `flag:"s" default:"actors" desc:"what to show: actors, sidecars or load (kar get)"`
	ActorType    string `flag:"t" desc:"only actors of this type (kar get)"`
	ActorID      string `flag:"i" desc:"only the actor with this id, with its state (kar get)"`
	ResidentOnly bool   `flag:"mr" desc:"only actors resident in a live sidecar now (kar get)"`
	Force        bool   `flag:"force" desc:"purge or drain even while sidecars of the application run"`
}

func adminRedis(ctx context.Context, cfg *config.Client) (redis.UniversalClient, store.Keys, error) {
	if err := cfg.Validate(); err != nil {
		return nil, store.Keys{}, err
	}
	if log, err := NewLogger(cfg.Verbose, io.Discard); err == nil {
		store.RouteLogs(log)
	}
	rdb, err := store.Connect(ctx, cfg.Backend)
	return rdb, store.NewKeys(cfg.App), err
}

// Get is `kar get`: the sidecars or the actors of an application, in KAR's
// text (or JSON with -o json; KAR put its text heading before the JSON too).
func Get(ctx context.Context, cfg *Admin, stdout, stderr io.Writer) int {
	system := strings.ToLower(cfg.System)
	if system != "actors" && system != "actor" && system != "sidecars" && system != "sidecar" && system != "load" {
		fmt.Fprintf(stderr, "kar get: -s %q: want actors, sidecars or load\n", cfg.System)
		return ExitConfig
	}
	rdb, keys, err := adminRedis(ctx, &cfg.Client)
	if err != nil {
		fmt.Fprintln(stderr, "kar get:", err)
		return ExitConfig
	}
	defer rdb.Close()
	asJSON := strings.EqualFold(cfg.Output, "json")
	if system == "load" {
		return getLoad(ctx, cfg, rdb, keys, asJSON, stdout, stderr)
	}
	members, err := mesh.LoadMembers(ctx, rdb, keys)
	if err != nil {
		fmt.Fprintln(stderr, "kar get:", err)
		return ExitFailure
	}
	if system == "sidecars" || system == "sidecar" {
		api.WriteSidecars(stdout, members, asJSON)
		if asJSON {
			io.WriteString(stdout, "\n")
		}
		return 0
	}
	if cfg.ActorID != "" {
		return getState(ctx, cfg, rdb, keys, asJSON, stdout, stderr)
	}
	placed, err := api.Placements(ctx, rdb, keys, cfg.ActorType)
	if err != nil {
		fmt.Fprintln(stderr, "kar get:", err)
		return ExitFailure
	}
	var actors map[string][]string
	var heading string
	if cfg.ResidentOnly {
		live := map[string]bool{}
		for _, m := range members {
			live[m.ID] = true
		}
		actors = api.ActorsOn(placed, live)
		heading = "Listing all memory-resident actor instances:"
		if cfg.ActorType != "" {
			heading = fmt.Sprintf("Memory-resident instances of actor type %v are:", cfg.ActorType)
		}
	} else {
		// Known instances: placed ones and those with persisted state
		// (kar drops a placement when it deactivates an instance).
		if placed[""] == nil {
			placed[""] = map[string][]string{}
		}
		seen := map[string]bool{}
		for _, types := range placed {
			for typ, ids := range types {
				for _, id := range ids {
					seen[typ+"\x00"+id] = true
				}
			}
		}
		states, err := store.ScanKeys(ctx, rdb, keys.StatePattern())
		if err != nil {
			fmt.Fprintln(stderr, "kar get:", err)
			return ExitFailure
		}
		for _, k := range states {
			typ, id, ok := keys.ParseActor(k)
			if ok && (cfg.ActorType == "" || typ == cfg.ActorType) && !seen[typ+"\x00"+id] {
				seen[typ+"\x00"+id] = true
				placed[""][typ] = append(placed[""][typ], id)
			}
		}
		actors = api.ActorsOn(placed, nil)
		heading = "Listing all known actor instances:"
		if cfg.ActorType != "" {
			heading = fmt.Sprintf("Known instances of actor type %v are:", cfg.ActorType)
		}
	}
	if !asJSON {
		fmt.Fprintln(stdout, heading)
	}
	api.WriteActors(stdout, actors, asJSON)
	io.WriteString(stdout, "\n")
	return 0
}

// getState is `kar get -i ID`: the persisted state of one actor instance.
func getState(ctx context.Context, cfg *Admin, rdb redis.UniversalClient, keys store.Keys, asJSON bool, stdout, stderr io.Writer) int {
	if cfg.ActorType == "" {
		fmt.Fprintln(stderr, "kar get: -i needs the actor type too: -t TYPE -i ID")
		return ExitConfig
	}
	st, err := actorstate.GetAll(ctx, rdb, keys, cfg.ActorType, cfg.ActorID)
	if err != nil {
		fmt.Fprintln(stderr, "kar get:", err)
		return ExitFailure
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	switch {
	case asJSON:
		fmt.Fprintln(stdout, string(b))
	case len(st) == 0:
		fmt.Fprintf(stdout, "Actor %v[%v] has no persisted state\n", cfg.ActorType, cfg.ActorID)
	default:
		fmt.Fprintf(stdout, "Persisted state of actor %v[%v] is:\n%s\n", cfg.ActorType, cfg.ActorID, b)
	}
	return 0
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
	rdb, keys, err := adminRedis(ctx, &cfg.Client)
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
	// Keys of kar's previous layout are moved first, so that drain finds
	// the partitions' positions under their present names.
	if _, err := store.EnsureLayout(ctx, rdb, keys); err != nil {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return ExitFailure
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
	// Every primary of a Redis Cluster holds some of the keys: ScanKeys
	// scans them all, and UnlinkMany removes keys of any slots.
	n := 0
	for _, p := range patterns {
		ks, err := store.ScanKeys(ctx, rdb, p)
		if err == nil {
			_, err = store.UnlinkMany(ctx, rdb, ks)
		}
		if err != nil {
			fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
			return ExitFailure
		}
		n += len(ks)
	}
	if err := kc.DeleteTopics(topics...); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return ExitFailure
	}
	fmt.Fprintf(stdout, "kar %s: application %s: removed %d Redis keys and the topics %s\n", name, cfg.App, n, strings.Join(topics, ", "))
	return 0
}
