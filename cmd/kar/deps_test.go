package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoZapLogger: kar links neither zap nor sdk-go's context package,
// whose init builds a zap logger that keeps 448 KB of heap live in every
// sidecar (GODEBUG=inittrace=1 showed it); sidecar/events/binding.go is
// kar's own CloudEvents bindings for that reason. A new import that pulls
// either back in fails here.
func TestNoZapLogger(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go is not on PATH")
	}
	out, err := exec.Command(goBin, "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	events := false
	for _, p := range deps {
		switch {
		case p == "github.com/kar-runtime/kar/sidecar/events":
			events = true
		case p == "go.uber.org/zap" || strings.HasPrefix(p, "go.uber.org/zap/"),
			p == "github.com/cloudevents/sdk-go/v2/context":
			t.Errorf("kar links %s (its importer: go list -deps -f '{{.ImportPath}} {{.Imports}}' ./cmd/kar | grep %s)", p, p)
		}
	}
	if !events {
		t.Fatalf("go list -deps printed no sidecar/events among %d packages: not kar's dependencies", len(deps))
	}
}
