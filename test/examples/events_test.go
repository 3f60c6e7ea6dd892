package examples_test

import (
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestEvents runs examples/events-js as its README says: the Recorder actor
// component, the checker (subscribes the Recorder and waits), then the
// publisher, then the CloudEvents ingress demo; every event arrives, once,
// in order, and the CloudEvent posted in binary mode reaches the Recorder.
func TestEvents(t *testing.T) {
	b := testenv.Backend(t)
	env := []string{"EV_TOPIC=numbers", "EV_COUNT=20", "EV_TIMEOUT=45", "EV_CLOUDEVENTS=1"}
	sub, checker := eventsFlow(t, b, "events", env, "ingress.js")
	if !strings.Contains(checker.Output(), "Hello from outside the mesh!") {
		t.Errorf("the checker did not show the CloudEvent's data:\n%s", checker.Output())
	}
	if n := strings.Count(sub.Output(), "] Recorder recorder-"); n < 20 {
		t.Errorf("the subscriber logged %d events, want at least 20:\n%s", n, sub.Output())
	}
}

// eventsFlow runs examples/events-js in app as its README says: the
// Recorder actor component, the checker (subscribes the Recorder and
// waits), then the publisher and the extra publishers named (such as
// ingress.js), and waits for the checker's SUCCESS.
func eventsFlow(t *testing.T, b *devenv.Backend, app string, env []string, extra ...string) (sub, checker *testenv.Proc) {
	t.Helper()
	dir := nodeExample(t, "events-js")
	sub = karRun(t, b, "subscriber", dir, env, "-app", app, "-actors", "Recorder", "node", "subscriber.js")
	sub.WaitOutput(t, "Recorder listening", 30*time.Second)

	checker = karRun(t, b, "checker", dir, env, "-app", app, "node", "checker.js")
	checker.WaitOutput(t, "subscription is live", 45*time.Second)

	for _, js := range append([]string{"publisher.js"}, extra...) {
		pub := karRun(t, b, strings.TrimSuffix(js, ".js"), dir, env, "-app", app, "node", js)
		if code, err := pub.Wait(30 * time.Second); err != nil || code != 0 {
			t.Fatalf("%s: exit %d, %v; output:\n%s", js, code, err, pub.Output())
		}
	}
	code, err := checker.Wait(50 * time.Second)
	if err != nil || code != 0 || !strings.Contains(checker.Output(), "[STDOUT] SUCCESS") {
		t.Fatalf("checker: exit %d, %v; output:\n%s", code, err, checker.Output())
	}
	return sub, checker
}
