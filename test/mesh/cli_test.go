package mesh_test

import (
	"context"
	"encoding/json"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestCLI covers kar invoke, get, drain and purge against a live
// application, including their refusals.
func TestCLI(t *testing.T) {
	b := testenv.Backend(t)
	host := startActors(t, b, "host", "cli")
	env := karEnv(b)

	// KAR's output and exit codes by default; -o json for scripts.
	out, code := karCmd(t, env, "invoke", "-app", "cli", "Counter", "c1", "incr", "5")
	if code != 0 || out != "Method result: 5\n" {
		t.Fatalf("kar invoke: %d %q", code, out)
	}
	out, code = karCmd(t, env, "invoke", "-app", "cli", "Counter", "c1", "none")
	if code != 0 || out != "Method completed normally with void result.\n" {
		t.Errorf("kar invoke of a void method: %d %q", code, out)
	}
	// (actors.js installs no sys.errorHandler: a throwing method is a 404.)
	out, code = karCmd(t, env, "invoke", "-app", "cli", "Counter", "c1", "fail")
	if code != 0 || !strings.HasPrefix(out, "[STDERR] HTTP status: 404\n[STDERR] ") {
		t.Errorf("kar invoke of a throwing method: %d %q", code, out)
	}
	if out, code = karCmd(t, env, "invoke", "-app", "cli", "-o", "json", "Counter", "c1", "get"); code != 0 || out != "5\n" {
		t.Errorf("kar invoke -o json: %d %q", code, out)
	}
	if out, code = karCmd(t, env, "invoke", "-app", "cli", "-o", "json", "Counter", "c1", "none"); code != 0 || out != "" {
		t.Errorf("kar invoke -o json of a void method: %d %q", code, out)
	}
	if out, code = karCmd(t, env, "invoke", "-app", "cli", "-o", "json", "Counter", "c1", "fail"); code != 1 || !strings.Contains(out, "answered 404") {
		t.Errorf("kar invoke -o json of a throwing method: %d %q", code, out)
	}
	if out, code = karCmd(t, env, "invoke", "-app", "cli", "Counter"); code != 2 || !strings.Contains(out, "usage") {
		t.Errorf("kar invoke without method: %d %q", code, out)
	}

	out, code = karCmd(t, env, "get", "-app", "cli")
	if code != 0 || !strings.Contains(out, "Counter: [\n    c1\n]") {
		t.Errorf("kar get: %d\n%s", code, out)
	}
	out, code = karCmd(t, env, "get", "-app", "cli", "-s", "sidecars")
	if code != 0 || !strings.Contains(out, "[Counter]") {
		t.Errorf("kar get -s sidecars: %d\n%s", code, out)
	}
	out, code = karCmd(t, env, "get", "-app", "cli", "-s", "actors", "-mr", "-o", "json")
	var actors map[string][]string
	if code != 0 || json.Unmarshal([]byte(out), &actors) != nil || len(actors) != 1 || strings.Join(actors["Counter"], ",") != "c1" {
		t.Errorf("kar get -s actors -o json: %d %s", code, out)
	}
	out, code = karCmd(t, env, "get", "-app", "cli", "-s", "actors", "-t", "Counter", "-i", "c1")
	if code != 0 || !strings.Contains(out, `"count": 5`) {
		t.Errorf("kar get -i: %d\n%s", code, out)
	}
	if out, code = karCmd(t, env, "get", "-app", "cli", "-s", "bogus"); code != 2 {
		t.Errorf("kar get -s bogus: %d %s", code, out)
	}

	// Purge and drain refuse while the application runs.
	for _, cmd := range []string{"purge", "drain"} {
		out, code := karCmd(t, env, cmd, "-app", "cli")
		if code != 2 || !strings.Contains(out, "running") {
			t.Errorf("kar %s while running: %d %s", cmd, code, out)
		}
	}
	host.Signal(syscall.SIGTERM)
	if _, err := host.Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	out, code = karCmd(t, env, "drain", "-app", "cli")
	if code != 0 {
		t.Fatalf("kar drain: %d %s", code, out)
	}
	rdb, err := store.Connect(context.Background(), backendConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	keys := store.NewKeys("cli")
	if v, _ := rdb.HGet(context.Background(), keys.ActorState("Counter", "c1"), "count").Result(); v != "5" {
		t.Errorf("drain removed state: count=%q", v)
	}
	out, code = karCmd(t, env, "purge", "-app", "cli")
	if code != 0 {
		t.Fatalf("kar purge: %d %s", code, out)
	}
	if n, _ := rdb.Keys(context.Background(), keys.Pattern()).Result(); len(n) != 0 {
		t.Errorf("keys left after purge: %v", n)
	}
	// The application starts afresh after a purge.
	startActors(t, b, "host2", "cli")
	if out, code := karCmd(t, env, "invoke", "-app", "cli", "Counter", "c1", "incr", "1"); code != 0 || out != "Method result: 1\n" {
		t.Errorf("after purge: %d %q", code, out)
	}
}
