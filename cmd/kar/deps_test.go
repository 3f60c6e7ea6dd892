package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLeanRuntime: what kar links is mapped by every sidecar, so kar links
// nothing the runtime does not need. These packages came in once and are
// kept out:
//   - zap and sdk-go's context package, whose init builds a zap logger that
//     keeps 448 KB of heap live in every sidecar (GODEBUG=inittrace=1
//     showed it); sidecar/events/binding.go is kar's own CloudEvents
//     bindings for that reason;
//   - kar dev's broker and Redis (kfake with its protocol messages,
//     miniredis with its Lua), which are kar-dev's: in kar they cost a
//     loaded sidecar 1.8 MiB of resident memory (issue 16).
//
// A new import that pulls one back in fails here.
func TestLeanRuntime(t *testing.T) {
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
		case underAny(p, "go.uber.org/zap", "github.com/cloudevents/sdk-go/v2/context",
			"github.com/kar-runtime/kar/devenv", "github.com/twmb/franz-go",
			"github.com/alicebob/miniredis/v2", "github.com/yuin/gopher-lua"):
			t.Errorf("kar links %s (its importer: go list -deps -f '{{.ImportPath}} {{.Imports}}' ./cmd/kar | grep %s)", p, p)
		}
	}
	if !events {
		t.Fatalf("go list -deps printed no sidecar/events among %d packages: not kar's dependencies", len(deps))
	}
}

// underAny reports whether package p is one of roots or inside one.
func underAny(p string, roots ...string) bool {
	for _, r := range roots {
		if p == r || strings.HasPrefix(p, r+"/") {
			return true
		}
	}
	return false
}
