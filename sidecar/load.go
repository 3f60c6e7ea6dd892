package sidecar

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/sidecar/config"
	"github.com/kar-runtime/kar/sidecar/mesh"
	"github.com/kar-runtime/kar/sidecar/metrics"
	"github.com/redis/go-redis/v9"
)

// MeshLoad is `kar get -s load`: the load of an application's mesh, summed
// over the loads its sidecars publish in Redis (metrics.Load), with the
// backlog of its topic's partitions from Kafka's offsets.
type MeshLoad struct {
	App     string       `json:"app"`
	Targets []TargetLoad `json:"targets"`
	// Partitions with a lease or records not yet finished.
	Partitions []PartitionLoad `json:"partitions"`
	// Unread sums the partitions' unread records; KafkaError says why
	// the partitions are unknown, if they are.
	Unread     int64  `json:"unread"`
	KafkaError string `json:"kafkaError,omitempty"`
}

// TargetLoad is one service's or actor type's load across the mesh.
type TargetLoad struct {
	Type    string `json:"type"`
	Name    string `json:"name"`
	Members int    `json:"members"`
	// InFlight: requests its components run now; Held: requests waiting
	// for a component of it to join; PerSecond: answers per second, and
	// ErrorsPerSecond the 5xx among them, over the last second.
	InFlight        int64   `json:"inFlight"`
	Held            int64   `json:"held"`
	PerSecond       float64 `json:"perSecond"`
	ErrorsPerSecond float64 `json:"errorsPerSecond"`
	// P50Ms and P99Ms: how long its components took, in milliseconds,
	// over the last ten seconds (metrics.LatencyWindow); 0 without calls.
	P50Ms float64 `json:"p50Ms"`
	P99Ms float64 `json:"p99Ms"`
	// Answered and Errors: answers (and 5xx among them) since the live
	// members started.
	Answered int64 `json:"answered"`
	Errors   int64 `json:"errors"`
}

// PartitionLoad is one partition of the application's topic: its end (the
// high-water mark), the position its owner committed (every record below
// is finished) and the records in between: unread, or read and not yet
// finished (running, held, waiting to be passed on).
type PartitionLoad struct {
	Partition int32  `json:"partition"`
	Owner     string `json:"owner,omitempty"`
	End       int64  `json:"end"`
	Committed int64  `json:"committed"`
	Unread    int64  `json:"unread"`
}

// ReadLoad reads the load of the application whose keys are given: from
// Redis, and from Kafka when kc is not nil. It costs a few Redis calls
// and two offset requests per broker: cheap enough to poll every second.
func ReadLoad(ctx context.Context, rdb redis.UniversalClient, keys store.Keys, kc sarama.Client, app string) (*MeshLoad, error) {
	members, err := mesh.LoadMembers(ctx, rdb, keys)
	if err != nil {
		return nil, err
	}
	out := &MeshLoad{App: app, Targets: []TargetLoad{}, Partitions: []PartitionLoad{}}
	byKey := map[string]*TargetLoad{}
	latency := map[*TargetLoad][][2]int64{}
	target := func(typ, name string) *TargetLoad {
		k := typ + "/" + name
		if t := byKey[k]; t != nil {
			return t
		}
		t := &TargetLoad{Type: typ, Name: name}
		byKey[k] = t
		return t
	}
	loadKeys := make([]string, len(members))
	for i, m := range members {
		loadKeys[i] = keys.Load(m.ID)
		for _, s := range m.Services {
			target("service", s).Members++
		}
		for _, a := range m.Actors {
			target("actor", a).Members++
		}
	}
	if len(loadKeys) > 0 {
		vals, err := rdb.MGet(ctx, loadKeys...).Result()
		if err != nil {
			return nil, fmt.Errorf("read the sidecars' loads: %w", err)
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // a sidecar that has not published yet
			}
			var l metrics.Load
			if json.Unmarshal([]byte(s), &l) != nil {
				continue
			}
			for _, tl := range l.Targets {
				t := target(tl.Type, tl.Name)
				t.InFlight += tl.InFlight
				t.Held += tl.Held
				t.PerSecond += tl.PerSecond
				t.ErrorsPerSecond += tl.ErrorsPerSecond
				t.Answered += tl.Served
				t.Errors += tl.Errors
				// The sidecars' latency buckets merge into the mesh's.
				latency[t] = append(latency[t], tl.Latency...)
			}
		}
	}
	for _, t := range byKey {
		t.P50Ms = metrics.LatencyQuantile(latency[t], 0.5)
		t.P99Ms = metrics.LatencyQuantile(latency[t], 0.99)
		out.Targets = append(out.Targets, *t)
	}
	slices.SortFunc(out.Targets, func(a, b TargetLoad) int {
		return strings.Compare(a.Type+"/"+a.Name, b.Type+"/"+b.Name)
	})
	if kc != nil {
		if err := readBacklog(ctx, rdb, keys, kc, kafka.Topic(app), out); err != nil {
			out.KafkaError = err.Error()
		}
	}
	return out, nil
}

// readBacklog fills in the partitions of topic: end offsets from Kafka,
// committed positions and owners from Redis.
func readBacklog(ctx context.Context, rdb redis.UniversalClient, keys store.Keys, kc sarama.Client, topic string, out *MeshLoad) error {
	if err := kc.RefreshMetadata(topic); err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	parts, err := kc.Partitions(topic)
	if err != nil {
		return fmt.Errorf("kafka: %w", err)
	}
	ends, err := offsets(kc, topic, parts, sarama.OffsetNewest)
	if err != nil {
		return err
	}
	starts, err := offsets(kc, topic, parts, sarama.OffsetOldest)
	if err != nil {
		return err
	}
	rkeys := make([]string, 0, 2*len(parts))
	for _, p := range parts {
		rkeys = append(rkeys, keys.Lease(p), keys.Offset(p))
	}
	vals, err := store.GetMany(ctx, rdb, rkeys)
	if err != nil {
		return fmt.Errorf("read partition positions: %w", err)
	}
	for i, p := range parts {
		pl := PartitionLoad{Partition: p, End: ends[p], Committed: starts[p]}
		pl.Owner, _ = vals[2*i].(string)
		if s, ok := vals[2*i+1].(string); ok {
			if c, err := strconv.ParseInt(s, 10, 64); err == nil {
				pl.Committed = max(c, starts[p])
			}
		}
		pl.Unread = max(pl.End-pl.Committed, 0)
		if pl.Owner == "" && pl.Unread == 0 {
			continue
		}
		out.Unread += pl.Unread
		out.Partitions = append(out.Partitions, pl)
	}
	slices.SortFunc(out.Partitions, func(a, b PartitionLoad) int { return int(a.Partition - b.Partition) })
	return nil
}

// offsets asks for the newest or oldest offsets of partitions, one
// request per broker.
func offsets(kc sarama.Client, topic string, parts []int32, which int64) (map[int32]int64, error) {
	return kafka.Offsets(kc, topic, parts, which)
}

// loadKafka connects to Kafka for the backlog of the application's
// partitions; nil (with a note on stderr) when it cannot: Redis alone
// still tells members, in-flight and held requests.
func loadKafka(cfg *config.Client, name string, stderr io.Writer) sarama.Client {
	sc, err := kafka.SaramaConfig(cfg.Backend, "kar-"+name+"-"+cfg.App)
	if err != nil {
		fmt.Fprintf(stderr, "kar %s: no backlog from Kafka: %v\n", name, err)
		return nil
	}
	kc, err := sarama.NewClient(cfg.KafkaBrokers, sc)
	if err != nil {
		fmt.Fprintf(stderr, "kar %s: no backlog from Kafka: %v\n", name, err)
		return nil
	}
	return kc
}

// getLoad is `kar get -s load`.
func getLoad(ctx context.Context, cfg *Admin, rdb redis.UniversalClient, keys store.Keys, asJSON bool, stdout, stderr io.Writer) int {
	if kc := loadKafka(&cfg.Client, "get", stderr); kc != nil {
		defer kc.Close()
		return printLoad(ctx, rdb, keys, kc, cfg.App, asJSON, "get", stdout, stderr)
	}
	return printLoad(ctx, rdb, keys, nil, cfg.App, asJSON, "get", stdout, stderr)
}

// printLoad reads the load once and prints it: one line of JSON, or the
// tables of WriteLoad.
func printLoad(ctx context.Context, rdb redis.UniversalClient, keys store.Keys, kc sarama.Client, app string, asJSON bool, name string, stdout, stderr io.Writer) int {
	l, err := ReadLoad(ctx, rdb, keys, kc, app)
	if err != nil {
		fmt.Fprintf(stderr, "kar %s: %v\n", name, err)
		return ExitFailure
	}
	if asJSON {
		b, _ := json.Marshal(l)
		stdout.Write(append(b, '\n'))
		return 0
	}
	WriteLoad(stdout, l)
	return 0
}

// TopConfig is the configuration of kar top.
type TopConfig struct {
	config.Client
	Iterations int `flag:"n" desc:"show this many views, a second apart, then exit (0: until interrupted)"`
}

// clearScreen moves the cursor home and clears the terminal (ANSI).
const clearScreen = "\x1b[H\x1b[2J"

// Top is `kar top`: the load of `kar get -s load`, read again every
// second until interrupted (or -n views): in the terminal, cleared before
// each view; with -o json, one JSON object a line. A view that cannot be
// read is reported on stderr and the next one tried; the exit code is
// that of the last view.
func Top(ctx context.Context, cfg *TopConfig, stdout, stderr io.Writer) int {
	if cfg.Iterations < 0 {
		fmt.Fprintf(stderr, "kar top: -n %d: want 0 (until interrupted) or more\n", cfg.Iterations)
		return ExitConfig
	}
	rdb, keys, err := adminRedis(ctx, &cfg.Client)
	if err != nil {
		fmt.Fprintln(stderr, "kar top:", err)
		return ExitConfig
	}
	defer rdb.Close()
	kc := loadKafka(&cfg.Client, "top", stderr)
	if kc != nil {
		defer kc.Close()
	}
	asJSON := strings.EqualFold(cfg.Output, "json")
	tick := time.NewTicker(metrics.LoadPeriod)
	defer tick.Stop()
	code := 0
	var view bytes.Buffer
	for i := 0; cfg.Iterations == 0 || i < cfg.Iterations; i++ {
		if i > 0 {
			select {
			case <-ctx.Done(): // Ctrl-C
				return code
			case <-tick.C:
			}
		}
		view.Reset()
		if !asJSON {
			fmt.Fprintf(&view, "%skar top: application %s at %s (every %v; Ctrl-C to stop)\n\n", clearScreen, cfg.App,
				time.Now().Format(time.TimeOnly), metrics.LoadPeriod)
		}
		// One write per view, so that the terminal never shows half of one.
		code = printLoad(ctx, rdb, keys, kc, cfg.App, asJSON, "top", &view, stderr)
		if ctx.Err() != nil {
			return 0
		}
		stdout.Write(view.Bytes())
	}
	return code
}

// WriteLoad writes l as two tables: the targets, then the partitions.
func WriteLoad(w io.Writer, l *MeshLoad) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tNAME\tMEMBERS\tIN FLIGHT\tHELD\tREQ/S\tERR/S\tP50 MS\tP99 MS\tANSWERED\tERRORS")
	for _, t := range l.Targets {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%.1f\t%.1f\t%.2f\t%.2f\t%d\t%d\n", t.Type, t.Name, t.Members, t.InFlight, t.Held,
			t.PerSecond, t.ErrorsPerSecond, t.P50Ms, t.P99Ms, t.Answered, t.Errors)
	}
	tw.Flush()
	fmt.Fprintln(w)
	if l.KafkaError != "" {
		fmt.Fprintln(w, "backlog unknown:", l.KafkaError)
		return
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOWNER\tEND\tCOMMITTED\tUNREAD")
	for _, p := range l.Partitions {
		owner := p.Owner
		if owner == "" {
			owner = "-"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%d\t%d\n", p.Partition, owner, p.End, p.Committed, p.Unread)
	}
	tw.Flush()
	fmt.Fprintf(w, "unread or unfinished records: %d\n", l.Unread)
}
