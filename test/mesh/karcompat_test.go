package mesh_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestKARRunFlags: a KAR 1.3.10 command line runs under kar (KAR's
// actors-ykt example starts its server with -actor_reminder_interval): the
// flags kar gives a meaning take effect, the others each warn on one line,
// and the component gets KAR_REQUEST_TIMEOUT in milliseconds as KAR exports it.
func TestKARRunFlags(t *testing.T) {
	b := testenv.Backend(t)
	p := testenv.Start(t, "karflags", karEnv(b), "", testenv.KarBin(t), "run", "-app", "karflags",
		"-actor_reminder_interval", "100ms", "-actor_reminder_acceptable_delay", "3s", "-request_retry_limit", "30s",
		"-hostname", "ykt-host", "-kubernetes_mode", "-placement_cache", "-redis_slow_op_threshold", "2s", "-v", "warning",
		"sh", "-c", `echo "timeout=$KAR_REQUEST_TIMEOUT"; while [ ! -e /nonexistent-stop ]; do sleep 0.05; done`)
	p.WaitOutput(t, "[STDOUT] timeout=30000", 20*time.Second)
	for _, f := range []string{"-kubernetes_mode", "-placement_cache", "-redis_slow_op_threshold"} {
		if n := strings.Count(p.Output(), f+" ("); n != 1 {
			t.Errorf("%d warning lines about %s, want 1:\n%s", n, f, p.Output())
		}
	}
	// -hostname is the host in the sidecar's registration.
	rdb, err := store.Connect(context.Background(), backendConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	keys := store.NewKeys("karflags")
	testenv.Eventually(t, 20*time.Second, func() bool {
		ids, _ := rdb.SMembers(context.Background(), keys.Sidecars()).Result()
		for _, id := range ids {
			var m struct{ Host string }
			s, _ := rdb.Get(context.Background(), keys.Sidecar(id)).Result()
			if json.Unmarshal([]byte(s), &m) == nil && m.Host == "ykt-host" {
				return true
			}
		}
		return false
	}, "a registration with host ykt-host")
	p.Kill()

	// kar-sdk's spellings of the shared variables: milliseconds and true/false.
	p2 := testenv.Start(t, "sdkenv", karEnv(b, "KAR_REQUEST_TIMEOUT=25000", "KAR_VERBOSE=true"), "", testenv.KarBin(t), "run", "-app", "karflags",
		"sh", "-c", `echo "timeout=$KAR_REQUEST_TIMEOUT verbose=$KAR_VERBOSE"`)
	if code, err := p2.Wait(30 * time.Second); err != nil || code != 0 {
		t.Fatalf("kar run with KAR_REQUEST_TIMEOUT=25000 KAR_VERBOSE=true: exit %d, %v\n%s", code, err, p2.Output())
	}
	if !strings.Contains(p2.Output(), "[STDOUT] timeout=25000 verbose=true") {
		t.Errorf("component environment:\n%s", p2.Output())
	}
	// A password on the command line works, with a warning that never shows it.
	pw := karEnv(b)
	p3 := testenv.Start(t, "pwflag", pw, "", testenv.KarBin(t), "run", "-app", "karflags", "-redis_password", "", "-kafka_password", "", "true")
	if code, err := p3.Wait(30 * time.Second); err != nil || code != 0 || strings.Count(p3.Output(), "visible to every user") != 2 {
		t.Errorf("password flags: exit %d, %v\n%s", code, err, p3.Output())
	}
}
