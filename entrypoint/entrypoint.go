// Package entrypoint holds the sidecar-in-container contract: the
// environment variables a deployment sets on an application container
// (Component.Env) and how the container's entrypoint turns them back into
// a `kar run` invocation (Plan).
//
// Both directions live here so the Code Engine tooling, the Knative
// manifests and the entrypoint itself can never disagree on a name.
package entrypoint

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"

	"github.com/kar-runtime/kar/sidecar/config"
)

// Names of the environment contract (DESIGN.md, configuration through the environment).
const (
	EnvSidecarInContainer = "KAR_SIDECAR_IN_CONTAINER"
	EnvApp                = "KAR_APP"
	EnvAppPort            = "KAR_APP_PORT"
	EnvRuntimePort        = "KAR_RUNTIME_PORT"
	EnvExtraArgs          = "KAR_EXTRA_ARGS"
	EnvService            = "KAR_SERVICE"
	EnvActors             = "KAR_ACTORS"
	EnvVerbose            = "KAR_VERBOSE"
	EnvH2C                = "KAR_H2C"
)

// RuntimeConfigSecret is the secret holding the KAFKA_*/REDIS_* settings,
// in Kubernetes, Knative and Code Engine alike.
const RuntimeConfigSecret = "kar.ibm.com.runtime-config"

// DefaultPort is the port a component listens on unless told otherwise
// (Knative's and Code Engine's default too).
const DefaultPort = 8080

// Var is one environment variable.
type Var struct {
	Name  string
	Value string
}

// Component is what a sidecar-in-container deployment tells kar about the
// application component in its container.
type Component struct {
	App     string
	Service string
	Actors  []string
	Port    int    // the port the component listens on (KAR_APP_PORT); 0 means DefaultPort
	Verbose string // kar log level; empty leaves kar's default
	H2C     bool   // the component speaks HTTP/2 cleartext
}

// Levels are the accepted -v values.
var Levels = []string{"error", "warn", "warning", "info", "debug"}

// Validate checks a component before it is deployed, with messages naming
// the flag to fix.
func (c Component) Validate() error {
	if err := config.ValidApp(c.App); err != nil {
		return err
	}
	if c.Port < 0 || c.Port > 65535 {
		return fmt.Errorf("-port %d is not a port number (1-65535)", c.Port)
	}
	if err := validName("-service", c.Service); err != nil {
		return err
	}
	for _, a := range c.Actors {
		if a == "" {
			return errors.New("-actors holds an empty actor type; give a comma-separated list such as -actors Cart,Order")
		}
		if err := validName("-actors", a); err != nil {
			return err
		}
	}
	if c.Verbose != "" && !validLevel(c.Verbose) {
		return fmt.Errorf("-v %q is not a log level; use one of %s", c.Verbose, strings.Join(Levels, ", "))
	}
	return nil
}

// PortOrDefault is the component's port.
func (c Component) PortOrDefault() int {
	if c.Port == 0 {
		return DefaultPort
	}
	return c.Port
}

// Env is the component's part of the environment contract. Each kar flag
// travels in its own variable (not in KAR_EXTRA_ARGS) so that no value
// holds a space: Code Engine documents literal values as ^[-._a-zA-Z0-9]+$.
func (c Component) Env() []Var {
	vars := []Var{
		{EnvSidecarInContainer, "true"},
		{EnvApp, c.App},
		{EnvAppPort, strconv.Itoa(c.PortOrDefault())},
	}
	if c.Service != "" {
		vars = append(vars, Var{EnvService, c.Service})
	}
	if len(c.Actors) > 0 {
		vars = append(vars, Var{EnvActors, strings.Join(c.Actors, ",")})
	}
	if c.Verbose != "" {
		vars = append(vars, Var{EnvVerbose, c.Verbose})
	}
	if c.H2C {
		vars = append(vars, Var{EnvH2C, "true"})
	}
	return vars
}

// reservedEnv are set by the deployment itself (or by Knative); a user
// -env may not override them.
var reservedEnv = map[string]string{
	EnvSidecarInContainer: "it is always true for these deployments",
	EnvApp:                "use -app",
	EnvAppPort:            "use -port",
	EnvService:            "use -service",
	EnvActors:             "use -actors",
	EnvVerbose:            "use -v",
	"PORT":                "Knative sets it to the container port",
	"K_SERVICE":           "Knative sets it",
	"K_CONFIGURATION":     "Knative sets it",
	"K_REVISION":          "Knative sets it",
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][-._A-Za-z0-9]*$`)

// ParseEnvFlag parses one -env K=V value.
func ParseEnvFlag(s string) (Var, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok {
		return Var{}, fmt.Errorf("-env %q: want NAME=VALUE", name)
	}
	if !envNameRE.MatchString(name) || len(name) > 253 {
		return Var{}, fmt.Errorf("-env %s: a variable name starts with a letter or '_' and holds only letters, digits, '_', '.' and '-' (at most 253)", name)
	}
	if why, bad := reservedEnv[name]; bad {
		return Var{}, fmt.Errorf("-env %s is set by kar itself: %s", name, why)
	}
	return Var{Name: name, Value: value}, nil
}

func validName(flagName, s string) error {
	if strings.ContainsAny(s, "/ \t?#,") {
		return fmt.Errorf("%s %q may not contain '/', '?', '#', ',' or spaces", flagName, s)
	}
	return nil
}

func validLevel(l string) bool {
	for _, v := range Levels {
		if strings.EqualFold(l, v) {
			return true
		}
	}
	return false
}

// Plan is what `kar entrypoint` will do.
type Plan struct {
	// Sidecar is true when the command runs under a sidecar in this container.
	Sidecar bool
	// RunArgs are the `kar run` arguments (after the word run), ending with
	// "--" and the command, when Sidecar is true.
	RunArgs []string
	// Command is the application's command and arguments.
	Command []string
}

// Lookup reads one environment variable (os.LookupEnv in production).
type Lookup func(string) (string, bool)

// NewPlan reads the environment through lookup and the entrypoint's
// arguments (`[--] CMD ARGS...`). With KAR_SIDECAR_IN_CONTAINER=true the
// plan is `kar run -app $KAR_APP $KAR_EXTRA_ARGS -- CMD ARGS...`; the
// other KAR_*, KAFKA_* and REDIS_* variables reach kar run through the
// environment, which it reads itself. Errors say which variable is wrong.
func NewPlan(lookup Lookup, args []string) (Plan, error) {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 || args[0] == "" {
		return Plan{}, errors.New("no command to run: use kar entrypoint [--] CMD ARGS... (in a Dockerfile: ENTRYPOINT [\"/kar/bin/kar\", \"entrypoint\", \"--\"] and CMD [\"your\", \"command\"])")
	}
	p := Plan{Command: args}
	mode, _ := lookup(EnvSidecarInContainer)
	if mode != "" {
		b, err := strconv.ParseBool(mode)
		if err != nil {
			return Plan{}, fmt.Errorf("%s=%q: want true or false", EnvSidecarInContainer, mode)
		}
		p.Sidecar = b
	}
	if !p.Sidecar {
		return p, nil
	}
	app, _ := lookup(EnvApp)
	if app == "" {
		return Plan{}, fmt.Errorf("%s=true but %s is not set: set %s to the application name (kar ce app run and kar knative service set it from -app)", EnvSidecarInContainer, EnvApp, EnvApp)
	}
	if err := config.ValidApp(app); err != nil {
		return Plan{}, fmt.Errorf("%s: %w", EnvApp, err)
	}
	if err := checkPort(lookup, EnvAppPort, 1); err != nil {
		return Plan{}, err
	}
	if err := checkPort(lookup, EnvRuntimePort, 0); err != nil {
		return Plan{}, err
	}
	for _, name := range []string{EnvService, EnvActors} {
		if v, _ := lookup(name); v != "" && strings.ContainsAny(v, "/ \t?#") {
			return Plan{}, fmt.Errorf("%s=%q may not contain '/', '?', '#' or spaces", name, v)
		}
	}
	if v, _ := lookup(EnvVerbose); v != "" && !validLevel(v) {
		return Plan{}, fmt.Errorf("%s=%q is not a log level; use one of %s", EnvVerbose, v, strings.Join(Levels, ", "))
	}
	if v, _ := lookup(EnvH2C); v != "" {
		if _, err := strconv.ParseBool(v); err != nil {
			return Plan{}, fmt.Errorf("%s=%q: want true or false", EnvH2C, v)
		}
	}
	extra, _ := lookup(EnvExtraArgs)
	extraArgs := strings.Fields(extra)
	for _, a := range extraArgs {
		if a == "--" {
			return Plan{}, fmt.Errorf("%s may hold only kar run flags, not %q: the command comes from the entrypoint's arguments", EnvExtraArgs, a)
		}
	}
	if len(extraArgs) > 0 && !strings.HasPrefix(extraArgs[0], "-") {
		return Plan{}, fmt.Errorf("%s=%q must start with a flag (such as -service S); the command comes from the entrypoint's arguments", EnvExtraArgs, extra)
	}
	p.RunArgs = append([]string{"-app", app}, extraArgs...)
	p.RunArgs = append(p.RunArgs, "--")
	p.RunArgs = append(p.RunArgs, args...)
	return p, nil
}

func checkPort(lookup Lookup, name string, min int) error {
	v, ok := lookup(name)
	if !ok || v == "" {
		return nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < min || n > 65535 {
		return fmt.Errorf("%s=%q is not a port number (%d-65535)", name, v, min)
	}
	return nil
}

// Exec replaces the current process with the plan's command, resolved on
// PATH, keeping the environment. It returns only on failure.
func Exec(command []string) error {
	path, err := exec.LookPath(command[0])
	if err != nil {
		return fmt.Errorf("cannot run %q: %w (is it installed in the image and on PATH?)", command[0], err)
	}
	if err := syscall.Exec(path, command, os.Environ()); err != nil {
		return fmt.Errorf("cannot run %s: %w", path, err)
	}
	return nil
}

// Check loads the kar run configuration a plan produces, from the process
// environment as kar run will, so a bad flag in KAR_EXTRA_ARGS or a bad
// KAFKA_/REDIS_ setting is reported before anything starts.
func Check(runArgs []string) error {
	var cfg config.Run
	if _, err := config.Load(&cfg, "run", runArgs, io.Discard); err != nil {
		return fmt.Errorf("bad kar run configuration: %w", err)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("bad kar run configuration: %w", err)
	}
	return nil
}
