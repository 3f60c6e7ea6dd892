// Package config holds the one configuration loader of kar.
//
// Every setting is one field of a tagged struct: `envconfig` names its
// environment variable (read through github.com/kelseyhightower/envconfig),
// `flag` its command-line twin, `default` its default and `desc` its help.
// Sources, lowest priority first: defaults, files in the config directory
// (one file per lower-case env key, as Kubernetes mounts the secret
// kar.ibm.com.runtime-config), the environment, KAR_EXTRA_ARGS, then the
// command line.
package config

import (
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"
)

// DefaultConfigDir is where Kubernetes mounts the secret kar.ibm.com.runtime-config.
const DefaultConfigDir = "/var/run/secrets/kar.ibm.com"

// Backend is how to reach Kafka and Redis. Every kar command that talks to
// the mesh embeds it.
type Backend struct {
	KafkaBrokers       []string `envconfig:"KAFKA_BROKERS" flag:"kafka_brokers" default:"localhost:31093" desc:"comma-separated Kafka bootstrap brokers"`
	KafkaVersion       string   `envconfig:"KAFKA_VERSION" flag:"kafka_version" default:"2.8.0" desc:"Kafka protocol version to speak"`
	KafkaEnableTLS     bool     `envconfig:"KAFKA_ENABLE_TLS" flag:"kafka_enable_tls" desc:"connect to Kafka over TLS"`
	KafkaUsername      string   `envconfig:"KAFKA_USERNAME" flag:"kafka_username" default:"token" desc:"SASL PLAIN user for Kafka (used when KAFKA_PASSWORD is set)"`
	KafkaPassword      string   `envconfig:"KAFKA_PASSWORD" flag:"kafka_password" secret:"true" desc:"SASL PLAIN password for Kafka (prefer the environment or the config dir: a command line is visible to every user of the machine)"`
	KafkaTLSSkipVerify bool     `envconfig:"KAFKA_TLS_SKIP_VERIFY" flag:"kafka_tls_skip_verify" desc:"do not verify the Kafka server certificate"`
	KafkaCA            string   `envconfig:"KAFKA_CA" desc:"base64 PEM CA certificate for Kafka TLS"`

	RedisHost          string `envconfig:"REDIS_HOST" flag:"redis_host" default:"localhost" desc:"Redis host; with -redis_cluster, one or several host[:port] seed nodes, comma separated"`
	RedisPort          int    `envconfig:"REDIS_PORT" flag:"redis_port" default:"31379" desc:"Redis port (of the hosts that give none)"`
	RedisCluster       bool   `envconfig:"REDIS_CLUSTER" flag:"redis_cluster" desc:"Redis is a Redis Cluster (REDIS_HOST: its seed nodes)"`
	RedisEnableTLS     bool   `envconfig:"REDIS_ENABLE_TLS" flag:"redis_enable_tls" desc:"connect to Redis over TLS"`
	RedisUser          string `envconfig:"REDIS_USER" flag:"redis_user" desc:"Redis ACL user"`
	RedisPassword      string `envconfig:"REDIS_PASSWORD" flag:"redis_password" secret:"true" desc:"Redis password (prefer the environment or the config dir: a command line is visible to every user of the machine)"`
	RedisCA            string `envconfig:"REDIS_CA" flag:"redis_ca_cert" orfile:"true" desc:"CA certificate for Redis TLS: base64 PEM (as KAR takes it) or the path of a PEM file"`
	RedisTLSSkipVerify bool   `envconfig:"REDIS_TLS_SKIP_VERIFY" flag:"redis_tls_skip_verify" desc:"do not verify the Redis server certificate"`

	// LeaseTTL bounds how long a killed sidecar's pending work waits before
	// a live sidecar adopts it.
	LeaseTTL time.Duration `envconfig:"KAR_LEASE_TTL" flag:"lease_ttl" default:"3s" desc:"how long a sidecar's partition lease lives without renewal"`
	// KafkaTopicConfig is KAR's flag: topic settings given to the
	// application's mesh topic when kar creates it.
	KafkaTopicConfig string `envconfig:"KAR_KAFKA_TOPIC_CONFIG" flag:"kafka_topic_config" desc:"settings k1=v1,k2=v2 of the application's mesh topic when kar creates it (e.g. retention.ms=86400000)"`
	// KafkaReplicationFactor is how many brokers keep a copy of each
	// topic kar creates; 0 lets kar choose from the cluster's size.
	KafkaReplicationFactor int `envconfig:"KAR_KAFKA_REPLICATION_FACTOR" flag:"kafka_replication_factor" desc:"replicas of each topic kar creates (the mesh and dead-letter topics, event topics it creates); 0: 3, or the number of brokers on a smaller cluster"`
	// KafkaNoIdempotence turns sarama's idempotent producer off (it is on
	// when this is false, so a Backend built in code gets it too): for a
	// cluster that misbehaves with it, or to measure what it costs.
	KafkaNoIdempotence bool `envconfig:"KAR_KAFKA_NO_IDEMPOTENCE" flag:"kafka_no_idempotence" desc:"do not use the idempotent producer, which writes each record once even when the producer sends it again after a lost acknowledgement or a leader change (it needs KAFKA_VERSION 0.11 or later; kar goes on without it, with one warning, when the cluster refuses it)"`

	// KAR 1.3.10's flags that mean nothing in kar: accepted so that KAR's
	// command lines keep working, with one warning line each (see docs/kar.md).
	RedisSlowOpThreshold time.Duration `envconfig:"KAR_REDIS_SLOW_OP_THRESHOLD" flag:"redis_slow_op_threshold" default:"1s" desc:"KAR's threshold for logging slow Redis operations (no effect in kar)" noeffect:"kar does not time Redis operations one by one"`
}

// Run is the configuration of `kar run`: one sidecar beside one component.
type Run struct {
	Backend
	App                     string        `envconfig:"KAR_APP" flag:"app" desc:"name of the application (required)"`
	Service                 string        `envconfig:"KAR_SERVICE" flag:"service" desc:"name of the service this component joins"`
	Actors                  []string      `envconfig:"KAR_ACTORS" flag:"actors" desc:"comma-separated actor types this component hosts"`
	AppPort                 int           `envconfig:"KAR_APP_PORT" flag:"app_port" default:"8080" desc:"port the component listens on"`
	RuntimePort             int           `envconfig:"KAR_RUNTIME_PORT" flag:"runtime_port" desc:"port of the sidecar's REST API (0: any free port)"`
	MetricsPort             int           `envconfig:"KAR_METRICS_PORT" flag:"metrics_port" desc:"also serve GET /metrics, and nothing else, on this port of every interface, for a Prometheus outside the host or Pod (the REST API listens on 127.0.0.1 only; 0: off)"`
	Verbose                 string        `envconfig:"KAR_VERBOSE" flag:"v" default:"error" desc:"log level: fatal, error, warn(ing), info, debug, KAR's numbers 0-4, or true (info) / false (error)"`
	H2C                     bool          `envconfig:"KAR_H2C" flag:"h2c" desc:"speak HTTP/2 cleartext to the component"`
	MissingComponentTimeout time.Duration `envconfig:"KAR_MISSING_COMPONENT_TIMEOUT" flag:"missing_component_timeout" default:"120s" desc:"how long a request waits for a component of its service to join"`
	ActorBusyTimeout        time.Duration `envconfig:"KAR_ACTOR_BUSY_TIMEOUT" flag:"actor_busy_timeout" default:"120s" desc:"how long an actor call waits for the instance to become free (0: forever)"`
	DeliveryAttempts        int           `envconfig:"KAR_DELIVERY_ATTEMPTS" flag:"delivery_attempts" default:"6" desc:"how many times a request is delivered to a component that takes it and fails without an answer (a crash in its handler) before the caller gets a 500 (refused connections, while the component restarts, do not count)"`
	EventAttempts           int           `envconfig:"KAR_EVENT_ATTEMPTS" flag:"event_attempts" default:"10" desc:"how many times an event is delivered to a subscriber that fails it (pauses from 100 ms doubling to 10 s) before it goes to the application's dead-letter topic"`
	ActorCollectorInterval  time.Duration `envconfig:"KAR_ACTOR_COLLECTOR_INTERVAL" flag:"actor_collector_interval" default:"10s" desc:"idle actor instances are deactivated after this long, looked for every interval (0: never)"`
	RequestTimeout          time.Duration `envconfig:"KAR_REQUEST_TIMEOUT" ignored:"true" ms:"true" flag:"request_timeout" default:"0s" desc:"give up on a synchronous call after this long (0: never; a plain number is milliseconds, as kar-sdk reads it)"`
	RequestRetryLimit       time.Duration `envconfig:"KAR_REQUEST_RETRY_LIMIT" flag:"request_retry_limit" default:"-1s" desc:"KAR's name for the call deadline: used when -request_timeout is not set (negative: none)"`
	ActorReminderInterval   time.Duration `envconfig:"KAR_ACTOR_REMINDER_INTERVAL" flag:"actor_reminder_interval" default:"1s" desc:"longest time the reminder scheduler waits before looking at the schedule again (it also wakes at each due time)"`
	ActorReminderDelay      time.Duration `envconfig:"KAR_ACTOR_REMINDER_ACCEPTABLE_DELAY" flag:"actor_reminder_acceptable_delay" default:"3s" desc:"a reminder fired later than this after its due time is logged as late"`
	Hostname                string        `envconfig:"KAR_HOSTNAME" flag:"hostname" desc:"host recorded in this sidecar's registration (default: the machine's host name)"`
	PlacementCache          bool          `envconfig:"KAR_PLACEMENT_CACHE" flag:"placement_cache" desc:"KAR's actor placement cache switch (no effect in kar)" noeffect:"kar always caches an actor's placement while its host is live"`
	RPCLib                  bool          `envconfig:"KAR_RPCLIB" flag:"rpclib" desc:"KAR's choice of messaging library (no effect in kar)" noeffect:"kar has one messaging layer"`
	KubernetesMode          bool          `envconfig:"KAR_KUBERNETES_MODE" flag:"kubernetes_mode" desc:"KAR's Kubernetes switch (no effect in kar)" noeffect:"kar runs the same way in and out of Kubernetes (the component reaches it on 127.0.0.1 in a Pod too)"`
	SidecarMode             bool          `envconfig:"KAR_SIDECAR_MODE" flag:"sidecar_mode" desc:"KAR's sidecar-container switch (no effect in kar)" noeffect:"kar runs the same way as a sidecar container and beside a local process"`
	Debug                   bool          `envconfig:"KAR_DEBUG" flag:"debug" desc:"KAR's debugger switch (no effect in kar)" noeffect:"kar has no debugger; use -v debug for its logs"`
	Cancel                  bool          `envconfig:"KAR_CANCEL" flag:"cancel" desc:"KAR's cancel switch (no effect in kar)" noeffect:"kar has no equivalent"`
	BodyTimeout             time.Duration `envconfig:"KAR_BODY_TIMEOUT" flag:"body_timeout" default:"10s" desc:"answer 408 and close the connection when a request body takes longer to arrive"`
	MemoryLimit             string        `envconfig:"KAR_MEMORY_LIMIT" flag:"memory_limit" desc:"soft limit of the sidecar's Go memory, as GOMEMLIMIT: the garbage collector works harder as it nears it (e.g. 32MiB; off: none; default 18MiB, raised while the live heap needs more, unless GOMEMLIMIT is set)"`
	AppReadyTimeout         time.Duration `envconfig:"KAR_APP_READY_TIMEOUT" flag:"app_ready_timeout" default:"60s" desc:"how long a service component may take to listen on its port before it joins anyway"`
	ConfigDir               string        `envconfig:"KAR_CONFIG_DIR" flag:"config_dir" default:"/var/run/secrets/kar.ibm.com" desc:"directory of configuration files, one per lower-case key"`
	ExtraArgs               string        `envconfig:"KAR_EXTRA_ARGS" desc:"extra kar run flags, read before the command line"`
}

// Client is the configuration of the one-shot commands (kar rest, invoke, get, purge, drain).
type Client struct {
	Backend
	App                     string        `envconfig:"KAR_APP" flag:"app" desc:"name of the application (required)"`
	Verbose                 string        `envconfig:"KAR_VERBOSE" flag:"v" default:"error" desc:"log level: fatal, error, warn(ing), info, debug, KAR's numbers 0-4, or true (info) / false (error)"`
	Output                  string        `flag:"o" desc:"output format: empty for KAR's text, or json (for scripts)"`
	ContentType             string        `flag:"content_type" default:"application/json" desc:"content type of the request body (kar rest)"`
	RequestTimeout          time.Duration `envconfig:"KAR_REQUEST_TIMEOUT" ignored:"true" ms:"true" flag:"request_timeout" default:"0s" desc:"give up on the call after this long (0: never; a plain number is milliseconds)"`
	ConfigDir               string        `envconfig:"KAR_CONFIG_DIR" flag:"config_dir" default:"/var/run/secrets/kar.ibm.com" desc:"directory of configuration files, one per lower-case key"`
	MissingComponentTimeout time.Duration `envconfig:"KAR_MISSING_COMPONENT_TIMEOUT" flag:"missing_component_timeout" default:"120s" desc:"how long a request waits for a component of its service to join"`
}

// ErrHelp is returned by Load when -h or -help was given; usage was printed.
var ErrHelp = flag.ErrHelp

// Load fills cfg (a pointer to Run, Client or any struct tagged like them)
// from defaults, the config directory, the environment, KAR_EXTRA_ARGS (when
// the struct has it) and args, and returns the positional arguments left
// after the flags. Usage goes to usageOut on -h. Errors name the offending
// key and say how to fix it.
func Load(cfg any, name string, args []string, usageOut io.Writer) ([]string, error) {
	fields := collect(reflect.ValueOf(cfg).Elem())

	// Defaults and environment, through envconfig; fields it is told to
	// ignore take a spelling it cannot parse (a duration given as plain
	// milliseconds, as kar-sdk reads KAR_REQUEST_TIMEOUT) and are read here.
	if err := envconfig.Process("", cfg); err != nil {
		return nil, fmt.Errorf("bad environment: %w", cleanEnvErr(err))
	}
	for _, f := range fields {
		if !f.ignored {
			continue
		}
		if err := f.set(f.def); err != nil {
			return nil, fmt.Errorf("bad default of %s: %w", f.env, err)
		}
		if v, ok := os.LookupEnv(f.env); ok && f.env != "" && v != "" {
			if err := f.set(v); err != nil {
				return nil, fmt.Errorf("bad environment: %s: %w", f.env, err)
			}
		}
	}
	// envconfig splits lists on commas as they are; "A, B,,C" means A, B, C.
	for _, f := range fields {
		if f.v.Kind() == reflect.Slice && f.v.Len() > 0 {
			f.set(strings.Join(f.v.Interface().([]string), ","))
		}
	}

	// The config directory fills what the environment left unset. Its
	// location may itself come from the flags, so peek at them first.
	dir := peekFlag(args, "config_dir")
	if dir == "" {
		dir = fieldString(fields, "config_dir")
	}
	if dir != "" {
		if err := applyDir(fields, dir); err != nil {
			return nil, err
		}
	}

	fs := flag.NewFlagSet("kar "+name, flag.ContinueOnError)
	// A bad flag is one line from the caller, not the whole usage; the
	// usage is printed on -h only (below).
	fs.SetOutput(io.Discard)
	values := map[string]*string{}
	bools := map[string]*bool{}
	for _, f := range fields {
		if f.flag == "" {
			continue
		}
		if f.v.Kind() == reflect.Bool {
			bools[f.flag] = fs.Bool(f.flag, f.v.Bool(), f.desc)
		} else {
			values[f.flag] = fs.String(f.flag, f.def, f.desc+envHint(f.env))
		}
	}
	fs.Usage = func() {}

	// KAR_EXTRA_ARGS are flags too, read before the command line so the command line wins.
	var all []string
	if extra := os.Getenv("KAR_EXTRA_ARGS"); extra != "" && hasField(fields, "KAR_EXTRA_ARGS") {
		all = append(all, strings.Fields(extra)...)
	}
	all = append(all, args...)
	if err := fs.Parse(all); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(usageOut, "Usage of kar %s:\n", name)
			fs.SetOutput(usageOut)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, fmt.Errorf("%w (run `kar %s -h` for its flags, `kar help` for the commands)", err, name)
	}
	var ferr error
	fs.Visit(func(fl *flag.Flag) {
		for _, f := range fields {
			if f.flag != fl.Name || ferr != nil {
				continue
			}
			if f.secret {
				// Never the value: it is the secret.
				fmt.Fprintf(usageOut, "kar %s: warning: -%s on the command line is visible to every user of this machine (ps); set %s in the environment or the config directory instead\n", name, fl.Name, f.env)
			}
			if f.v.Kind() == reflect.Bool {
				f.v.SetBool(*bools[fl.Name])
				continue
			}
			if err := f.set(*values[fl.Name]); err != nil {
				if f.secret {
					ferr = fmt.Errorf("bad flag -%s: %w", fl.Name, err)
				} else {
					ferr = fmt.Errorf("bad flag -%s=%q: %w", fl.Name, *values[fl.Name], err)
				}
			}
		}
	})
	if ferr != nil {
		return nil, ferr
	}
	for _, f := range fields {
		if f.orFile {
			if err := readIfPath(f); err != nil {
				return nil, err
			}
		}
	}
	warnNoEffect(fields, name, usageOut)
	return fs.Args(), nil
}

// readIfPath replaces the value of a setting that may be given as the path
// of a file (KAR's -redis_ca_cert is base64 PEM; a PEM file is handier)
// with the file's content, when the value is neither base64 nor PEM.
func readIfPath(f field) error {
	v := f.v.String()
	if v == "" || strings.Contains(v, "-----BEGIN") {
		return nil
	}
	if _, err := base64.StdEncoding.DecodeString(v); err == nil {
		return nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return fmt.Errorf("-%s (%s) is neither base64 PEM nor a readable PEM file: %w", f.flag, f.env, err)
	}
	f.v.SetString(string(b))
	return nil
}

// warnNoEffect prints one line for each setting of KAR's that kar accepts
// but does not use, when it was given (differs from its default).
func warnNoEffect(fields []field, name string, w io.Writer) {
	for _, f := range fields {
		if f.noEffect == "" {
			continue
		}
		given := false
		switch f.v.Kind() {
		case reflect.Bool:
			given = f.v.Bool()
		case reflect.String:
			given = f.v.String() != f.def
		default:
			d := reflect.New(f.v.Type()).Elem()
			given = setValue(d, f.def, f.ms) == nil && !d.Equal(f.v)
		}
		if given {
			fmt.Fprintf(w, "kar %s: warning: -%s (%s) has no effect: %s\n", name, f.flag, f.env, f.noEffect)
		}
	}
}

type field struct {
	v    reflect.Value
	env  string
	flag string
	def  string
	desc string
	// ignored: envconfig skips the field and Load reads its environment
	// variable itself; ms: a plain number is milliseconds; secret: never
	// shown; noEffect: why kar accepts the setting but does not use it.
	ignored, ms, secret, orFile bool
	noEffect                    string
}

func (f field) set(s string) error { return setValue(f.v, s, f.ms) }

func collect(v reflect.Value) []field {
	var out []field
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		if sf.Anonymous && sf.Type.Kind() == reflect.Struct {
			out = append(out, collect(v.Field(i))...)
			continue
		}
		out = append(out, field{
			v:    v.Field(i),
			env:  sf.Tag.Get("envconfig"),
			flag: sf.Tag.Get("flag"),
			def:  sf.Tag.Get("default"),
			desc: sf.Tag.Get("desc"),

			ignored:  sf.Tag.Get("ignored") == "true",
			ms:       sf.Tag.Get("ms") == "true",
			secret:   sf.Tag.Get("secret") == "true",
			orFile:   sf.Tag.Get("orfile") == "true",
			noEffect: sf.Tag.Get("noeffect"),
		})
	}
	return out
}

func hasField(fields []field, env string) bool {
	for _, f := range fields {
		if f.env == env {
			return true
		}
	}
	return false
}

func fieldString(fields []field, flagName string) string {
	for _, f := range fields {
		if f.flag == flagName && f.v.Kind() == reflect.String {
			return f.v.String()
		}
	}
	return ""
}

func envHint(env string) string {
	if env == "" {
		return ""
	}
	return " (env " + env + ")"
}

// applyDir reads one file per lower-case key; a missing directory is not an
// error (it is only mounted in Kubernetes), an unreadable file is.
func applyDir(fields []field, dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot read config directory %s: %w", dir, err)
	}
	present := map[string]bool{}
	for _, e := range entries {
		present[e.Name()] = true
	}
	for _, f := range fields {
		if f.env == "" {
			continue
		}
		if _, inEnv := os.LookupEnv(f.env); inEnv {
			continue
		}
		name := strings.ToLower(f.env)
		if !present[name] {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("cannot read config file %s: %w", filepath.Join(dir, name), err)
		}
		if err := f.set(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("bad value in config file %s: %w", filepath.Join(dir, name), err)
		}
	}
	return nil
}

// peekFlag finds -name=value or -name value in args without parsing the rest.
func peekFlag(args []string, name string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		t := strings.TrimLeft(a, "-")
		if t == a {
			continue
		}
		if v, ok := strings.CutPrefix(t, name+"="); ok {
			return v
		}
		if t == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// setValue parses s into v; ms: a duration may be a plain number of milliseconds.
func setValue(v reflect.Value, s string, ms bool) error {
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("want true or false")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		if v.Type() == reflect.TypeOf(time.Duration(0)) {
			if n, err := strconv.ParseInt(s, 10, 64); err == nil && ms {
				v.SetInt(int64(time.Duration(n) * time.Millisecond))
				return nil
			}
			d, err := time.ParseDuration(s)
			if err != nil && ms {
				return fmt.Errorf("want a duration such as 30s or 2m, or a number of milliseconds")
			}
			if err != nil {
				return fmt.Errorf("want a duration such as 30s or 2m")
			}
			v.SetInt(int64(d))
			return nil
		}
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("want a whole number")
		}
		v.SetInt(n)
	case reflect.Slice:
		var parts []string
		for _, p := range strings.Split(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				parts = append(parts, p)
			}
		}
		v.Set(reflect.ValueOf(parts))
	default:
		return fmt.Errorf("unsupported setting type %s", v.Type())
	}
	return nil
}

// cleanEnvErr keeps envconfig's message (it names the variable) but never a
// value: a bad value may be a password.
func cleanEnvErr(err error) error {
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: cannot parse its value as %s", pe.KeyName, pe.TypeName)
	}
	return err
}

// ValidApp checks an application name: it becomes part of Kafka topic and
// Redis key names, so it is limited to what both accept.
func ValidApp(app string) error {
	if app == "" {
		return errors.New("no application name: give -app NAME (or set KAR_APP)")
	}
	if len(app) > 200 {
		return fmt.Errorf("application name %q is longer than 200 characters", app[:20]+"...")
	}
	for _, r := range app {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("application name %q may hold only letters, digits, '.', '_' and '-'", app)
		}
	}
	return nil
}

// TopicConfig reads -kafka_topic_config, "k1=v1,k2=v2" as KAR takes it.
func (b *Backend) TopicConfig() (map[string]*string, error) {
	if strings.TrimSpace(b.KafkaTopicConfig) == "" {
		return nil, nil
	}
	out := map[string]*string{}
	for _, kv := range strings.Split(b.KafkaTopicConfig, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok || k == "" || v == "" || strings.Contains(v, "=") {
			return nil, fmt.Errorf("-kafka_topic_config: %q is not key=value (give k1=v1,k2=v2, e.g. retention.ms=86400000)", kv)
		}
		out[k] = &v
	}
	return out, nil
}

// Validate checks what Load cannot: required and consistent settings.
func (b *Backend) Validate() error {
	if _, err := b.TopicConfig(); err != nil {
		return err
	}
	if len(b.KafkaBrokers) == 0 {
		return errors.New("no Kafka brokers: set KAFKA_BROKERS (run `kar dev` for a local backend)")
	}
	if b.KafkaReplicationFactor < 0 || b.KafkaReplicationFactor > math.MaxInt16 {
		return fmt.Errorf("-kafka_replication_factor %d is not a replica count (0: kar chooses, at most 3)", b.KafkaReplicationFactor)
	}
	if b.RedisPort <= 0 || b.RedisPort > 65535 {
		return fmt.Errorf("REDIS_PORT %d is not a port number", b.RedisPort)
	}
	if _, err := b.RedisAddrs(); err != nil {
		return err
	}
	if b.LeaseTTL < 100*time.Millisecond {
		return fmt.Errorf("lease TTL %s is too short (at least 100ms)", b.LeaseTTL)
	}
	return nil
}

// RedisAddrs is the Redis addresses (host:port) of REDIS_HOST: one, or with
// RedisCluster one or more seed nodes of the cluster, comma separated. A
// host without a port takes REDIS_PORT.
func (b *Backend) RedisAddrs() ([]string, error) {
	if b.RedisHost == "" { // localhost, as go-redis dials it
		return []string{net.JoinHostPort("", strconv.Itoa(b.RedisPort))}, nil
	}
	var out []string
	for _, h := range strings.Split(b.RedisHost, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("REDIS_HOST %q holds an empty host: give host or host:port, comma separated", b.RedisHost)
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port (or an IPv6 literal without brackets): the whole is the host.
			host, port = strings.Trim(h, "[]"), strconv.Itoa(b.RedisPort)
		}
		if p, err := strconv.Atoi(port); err != nil || p <= 0 || p > 65535 {
			return nil, fmt.Errorf("REDIS_HOST %q: %q is not a port number", b.RedisHost, port)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	if len(out) > 1 && !b.RedisCluster {
		return nil, fmt.Errorf("REDIS_HOST %q names %d hosts: several hosts are the seed nodes of a Redis Cluster; set REDIS_CLUSTER=true", b.RedisHost, len(out))
	}
	return out, nil
}

// Validate checks a one-shot command's configuration.
func (c *Client) Validate() error {
	if err := ValidApp(c.App); err != nil {
		return err
	}
	if _, err := ParseLevel(c.Verbose); err != nil {
		return err
	}
	switch strings.ToLower(c.Output) {
	case "", "json":
	default:
		return fmt.Errorf("-o %q: the only output format is json (or leave -o out for text)", c.Output)
	}
	return c.Backend.Validate()
}

// CallTimeout is the deadline of a synchronous call: -request_timeout, or
// else KAR's -request_retry_limit; 0 means none.
func (r *Run) CallTimeout() time.Duration {
	if r.RequestTimeout > 0 {
		return r.RequestTimeout
	}
	return max(r.RequestRetryLimit, 0)
}

// Validate checks a kar run configuration.
func (r *Run) Validate() error {
	if err := ValidApp(r.App); err != nil {
		return err
	}
	if _, err := ParseLevel(r.Verbose); err != nil {
		return err
	}
	if err := r.Backend.Validate(); err != nil {
		return err
	}
	if r.AppPort <= 0 || r.AppPort > 65535 {
		return fmt.Errorf("-app_port %d is not a port number", r.AppPort)
	}
	if r.RuntimePort < 0 || r.RuntimePort > 65535 {
		return fmt.Errorf("-runtime_port %d is not a port number", r.RuntimePort)
	}
	if r.MetricsPort < 0 || r.MetricsPort > 65535 {
		return fmt.Errorf("-metrics_port %d is not a port number (0: off)", r.MetricsPort)
	}
	if r.MetricsPort != 0 && (r.MetricsPort == r.RuntimePort || r.MetricsPort == r.AppPort) {
		return fmt.Errorf("-metrics_port %d is also the runtime or the app port: give it a port of its own", r.MetricsPort)
	}
	if r.MemoryLimit != "" {
		if _, err := ParseMemoryLimit(r.MemoryLimit); err != nil {
			return err
		}
	}
	for _, name := range append([]string{r.Service}, r.Actors...) {
		if strings.ContainsAny(name, "/ \t?#:") {
			return fmt.Errorf("service or actor type %q may not contain '/', '?', '#', ':' or spaces", name)
		}
	}
	return nil
}
