package entrypoint

import (
	"errors"
	"flag"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// App is one sidecar-in-container deployment: a component, the image
// holding it and kar, and its fixed number of instances. Code Engine apps
// and Knative Services are built from it, with the same flags.
type App struct {
	Component
	Name  string // the Code Engine app / Knative Service name
	Image string
	Scale int // fixed number of instances: min = max = initial
	// Min and Max, when Max > 0: the instances' bounds for kar's
	// autoscaling on the mesh's load (kar ce autoscale, KEDA with
	// kar-scaler) instead of a fixed Scale.
	Min, Max       int
	scaleSet       bool // -scale was given
	Env            []Var
	Externalize    bool   // reachable from outside the cluster/project
	RegistrySecret string // pull secret for a private image
}

// Flags registers the deployment flags of kar-ce-run.sh on fs.
func (a *App) Flags(fs *flag.FlagSet) {
	fs.StringVar(&a.App, "app", "", "application name (required)")
	fs.StringVar(&a.Image, "image", "", "container image holding the component and /kar/bin/kar (required)")
	fs.StringVar(&a.Name, "name", "", "name of the deployed service: lower-case letters, digits and '-' (required)")
	fs.StringVar(&a.Service, "service", "", "service name the component serves")
	fs.Func("actors", "comma-separated actor types the component hosts", func(s string) error {
		a.Actors = nil
		for _, t := range strings.Split(s, ",") {
			a.Actors = append(a.Actors, strings.TrimSpace(t))
		}
		return nil
	})
	fs.IntVar(&a.Port, "port", DefaultPort, "port the component listens on")
	a.Scale = 1
	fs.Func("scale", "number of instances, fixed (Knative's and Code Engine's autoscalers cannot see Kafka load) (default 1)", func(s string) error {
		n, err := strconv.Atoi(s)
		a.Scale, a.scaleSet = n, true
		return err
	})
	fs.IntVar(&a.Min, "min", 0, "with -max: fewest instances when autoscaled on the mesh's load (0: scale to zero)")
	fs.IntVar(&a.Max, "max", 0, "most instances when autoscaled on the mesh's load by kar's scaler, instead of a fixed -scale (0: fixed scale)")
	fs.Func("env", "extra environment variable NAME=VALUE (repeatable)", func(s string) error {
		v, err := ParseEnvFlag(s)
		if err != nil {
			return errors.New(strings.TrimPrefix(err.Error(), "-env "))
		}
		a.Env = append(a.Env, v)
		return nil
	})
	fs.BoolVar(&a.Externalize, "externalize", false, "expose a public endpoint (default: private, cluster-local)")
	fs.StringVar(&a.RegistrySecret, "registry-secret", "", "name of the image pull secret for a private registry")
	fs.StringVar(&a.Verbose, "v", "", "kar log level: error, warn, info, debug")
	fs.BoolVar(&a.H2C, "h2c", false, "the component speaks HTTP/2 cleartext (h2c) instead of HTTP/1.1")
}

var (
	nameRE   = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
	secretRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
)

// Validate checks the deployment flags, naming the flag to fix.
func (a App) Validate() error {
	var errs []error
	if a.Name == "" {
		errs = append(errs, errors.New("no -name: give the name of the deployed service, e.g. -name greeter"))
	} else if !nameRE.MatchString(a.Name) || len(a.Name) > 63 {
		errs = append(errs, fmt.Errorf("-name %q: use at most 63 lower-case letters, digits and '-', starting with a letter", a.Name))
	}
	if a.Image == "" {
		errs = append(errs, errors.New("no -image: give the container image, e.g. -image us.icr.io/ns/greeter:1"))
	} else if strings.ContainsAny(a.Image, " \t\n") || len(a.Image) > 256 {
		errs = append(errs, fmt.Errorf("-image %q is not an image reference", a.Image))
	}
	if a.App == "" {
		errs = append(errs, errors.New("no -app: give the application name, e.g. -app greeter"))
	} else if err := a.Component.Validate(); err != nil {
		errs = append(errs, err)
	}
	if a.Port == 0 {
		errs = append(errs, errors.New("-port 0 is not a port number (1-65535)"))
	}
	errs = append(errs, a.validateScale())
	if a.RegistrySecret != "" && (!secretRE.MatchString(a.RegistrySecret) || len(a.RegistrySecret) > 253) {
		errs = append(errs, fmt.Errorf("-registry-secret %q is not a secret name (lower-case DNS name)", a.RegistrySecret))
	}
	seen := map[string]bool{}
	for _, v := range a.Env {
		if seen[v.Name] {
			errs = append(errs, fmt.Errorf("-env %s is given twice", v.Name))
		}
		seen[v.Name] = true
	}
	return errors.Join(errs...)
}

// AllEnv is the container environment: the kar contract, then the user's -env.
func (a App) AllEnv() []Var {
	return append(a.Component.Env(), a.Env...)
}

// validateScale checks -scale, or -min and -max.
func (a App) validateScale() error {
	switch {
	case a.Max < 0:
		return fmt.Errorf("-max %d: give the most instances, 1 to 1000 (or none for a fixed -scale)", a.Max)
	case a.Max == 0 && a.Min != 0:
		return fmt.Errorf("-min %d without -max: give -max too to autoscale, or a fixed -scale", a.Min)
	case a.Max == 0:
		if a.Scale < 1 || a.Scale > 1000 {
			return fmt.Errorf("-scale %d: give the fixed number of instances, 1 to 1000", a.Scale)
		}
	case a.scaleSet:
		return fmt.Errorf("-scale %d and -max %d: give a fixed -scale, or -min and -max to autoscale, not both", a.Scale, a.Max)
	case a.Min < 0:
		return fmt.Errorf("-min %d: give the fewest instances, 0 (scale to zero) or more", a.Min)
	case a.Max > 1000:
		return fmt.Errorf("-max %d: give at most 1000 instances", a.Max)
	case a.Min > a.Max:
		return fmt.Errorf("-min %d is above -max %d", a.Min, a.Max)
	}
	return nil
}

// Autoscaled says the instances follow the mesh's load between Min and
// Max (kar's scaler sets them), rather than a fixed Scale.
func (a App) Autoscaled() bool { return a.Max > 0 }

// Bounds are the fewest and most instances and those to start with: Scale
// for all three at a fixed scale; Min, Max and Min when autoscaled.
func (a App) Bounds() (min, max, initial int) {
	if a.Autoscaled() {
		return a.Min, a.Max, a.Min
	}
	return a.Scale, a.Scale, a.Scale
}

// ScaleString is the fixed scale as an annotation value.
func (a App) ScaleString() string { return strconv.Itoa(a.Scale) }
