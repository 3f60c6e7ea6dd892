package observability_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar"
)

// karGet runs `kar get -app app -s load ARGS...` and returns its stdout.
func karGet(t *testing.T, b *devenv.Backend, app string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.KarBin(t), append([]string{"get", "-app", app, "-s", "load"}, args...)...)
	cmd.Env = append(cmd.Environ(), b.Env()...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kar get -s load: %v\n%s", err, errb.String())
	}
	return out.String()
}

// TestGetLoad: `kar get -s load` shows, from Redis and Kafka's offsets,
// a service with no member and M requests held for it, requests in flight
// at a service's component, and the records not yet finished.
func TestGetLoad(t *testing.T) {
	b := testenv.Backend(t)
	const app = "obsload"
	release := make(chan struct{})
	released := false
	defer func() {
		if !released {
			close(release)
		}
	}()
	appPort := component(t, release)
	startSidecar(t, b, "server", "-app", app, "-service", "svc", "-actors", "Counter", "-app_port", strconv.Itoa(appPort))
	caller := startSidecar(t, b, "caller", "-app", app, "-missing_component_timeout", "0")
	waitMember(t, b, app, "svc", "Counter")

	const held, slow = 3, 2
	for range held {
		if s := call(t, caller, "POST", "/kar/v1/service/ghost/call/x", "async", "{}"); s != 202 {
			t.Fatalf("tell ghost: %d", s)
		}
	}
	for range slow {
		if s := call(t, caller, "POST", "/kar/v1/service/svc/call/slow", "async", "{}"); s != 202 {
			t.Fatalf("tell slow: %d", s)
		}
	}

	find := func(l *sidecar.MeshLoad, typ, name string) sidecar.TargetLoad {
		for _, tl := range l.Targets {
			if tl.Type == typ && tl.Name == name {
				return tl
			}
		}
		return sidecar.TargetLoad{Members: -1}
	}
	var l sidecar.MeshLoad
	testenv.Eventually(t, 15*time.Second, func() bool {
		l = sidecar.MeshLoad{}
		if err := json.Unmarshal([]byte(karGet(t, b, app, "-o", "json")), &l); err != nil {
			t.Fatalf("kar get -s load -o json: %v", err)
		}
		ghost, svc := find(&l, "service", "ghost"), find(&l, "service", "svc")
		return ghost.Members == 0 && ghost.Held == held && svc.Members == 1 && svc.InFlight == slow &&
			find(&l, "actor", "Counter").Members == 1 && l.KafkaError == "" && l.Unread >= held+slow
	}, "ghost: 0 members, %d held; svc: 1 member, %d in flight; %d+ records unfinished (last: %+v)", held, slow, held+slow, &l)

	text := karGet(t, b, app)
	t.Logf("kar get -s load:\n%s", text)
	for _, want := range []string{"TYPE", "ghost", "PARTITION", "unread or unfinished records:"} {
		if !strings.Contains(text, want) {
			t.Errorf("kar get -s load: no %q in\n%s", want, text)
		}
	}

	// Once the slow requests are answered, nothing is in flight.
	close(release)
	released = true
	testenv.Eventually(t, 15*time.Second, func() bool {
		l = sidecar.MeshLoad{}
		json.Unmarshal([]byte(karGet(t, b, app, "-o", "json")), &l)
		return find(&l, "service", "svc").InFlight == 0 && find(&l, "service", "ghost").Held == held
	}, "svc: nothing in flight once answered (last: %+v)", &l)
}
