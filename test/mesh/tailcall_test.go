package mesh_test

import (
	"encoding/json"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/internal/testenv"
)

// TestTailCallCombinations runs every kind of tail call (actor → service,
// actor → actor, service → service, service → actor) with kar-sdk 1.3.10
// components and a kar-sdk client, each through real `kar run` processes,
// with synchronous, promise and async (tell) callers. An actor method's
// tail call to a service hands the service the payload string's content
// as a JSON body, and the actor caller gets the service's answer as an
// actor result, as with KAR (issue 11 item 4).
func TestTailCallCombinations(t *testing.T) {
	b := testenv.Backend(t)
	nodeModules := filepath.Join(needNodeExample(t, "service-hello-js"), "node_modules")
	td := filepath.Join(repo(t), "test", "mesh", "testdata")
	env := karEnv(b, "NODE_PATH="+nodeModules)
	svc := testenv.Start(t, "tcsvc", env, td, testenv.KarBin(t), "run", "-app", "tc", "-service", "tcsvc",
		"-app_port", strconv.Itoa(testenv.FreePort(t)), "node", "tailcall-service.js")
	svc.WaitOutput(t, "tcsvc ready", 30*time.Second)
	host := testenv.Start(t, "actors", env, td, testenv.KarBin(t), "run", "-app", "tc", "-actors", "TC", "-h2c",
		"-app_port", strconv.Itoa(testenv.FreePort(t)), "node", "tailcall-actors.js")
	host.WaitOutput(t, "tc actors ready", 30*time.Second)
	waitServes(t, b, "tc", "tcsvc", 1)

	client := testenv.Start(t, "client", env, td, testenv.KarBin(t), "run", "-app", "tc", "node", "tailcall-client.js")
	code, err := client.Wait(120 * time.Second)
	if err != nil || code != 0 {
		t.Fatalf("client exit %d, %v:\n%s", code, err, client.Output())
	}
	got := map[string]string{}
	for _, line := range strings.Split(client.Output(), "\n") {
		_, rest, ok := strings.Cut(line, "RESULT ")
		if !ok {
			continue
		}
		f := strings.SplitN(rest, " ", 3)
		if len(f) == 3 {
			got[f[0]+" "+f[1]] = f[2]
		}
	}

	echo := func(body string) string { return `{"got":` + body + `,"type":"application/json"}` }
	cases := []struct{ name, want string }{
		// Actor → service: the payload string's content is the body; the
		// caller gets the answer as the method's value.
		{"toService", echo(`{"a":1}`)},
		{"toServiceValue", echo(`{"a":2}`)},        // a JSON value as payload: sent as is
		{"toServiceNoPayload", echo(`{}`)},         // no payload: an empty body
		{"toServiceNone", `undefined`},             // 204: no value
		{"toServiceText", `"plain words"`},         // not JSON: the text is the value
		{"toServiceFail", `error "no such thing"`}, // an error status passes through
		{"toServiceToActor", `{"args":[{"a":3}],"id":"svc-target"}`},
		// Actor → actor.
		{"toActor", `{"args":[4],"id":"other"}`},
		{"toActorNone", `undefined`},
		{"toSelf", `{"args":[5],"id":"caller"}`},
	}
	for _, c := range cases {
		for _, how := range []string{"sync", "promise"} {
			checkResult(t, got, c.name+" "+how, c.want)
		}
	}
	// Service callers: service → service, service → actor (the caller gets
	// the actor's answer as the actor API gives it), and a plain JSON answer
	// that only looks like a tail call, which is data as with KAR.
	for _, c := range []struct{ name, want string }{
		{"svc-toService", echo(`{"b":1}`)},
		{"svc-toActor", `{"value":{"args":[{"b":2}],"id":"svc-target"}}`},
		{"svc-looksLikeTail", `{"tailCall":true,"value":{"serviceName":"tcsvc","path":"/echo","payload":"{\"sneaky\":true}","method":"POST"}}`},
	} {
		for _, how := range []string{"sync", "promise"} {
			checkResult(t, got, c.name+" "+how, c.want)
		}
	}
	// Async callers: the service gets the body all the same.
	svc.WaitOutput(t, `echo {"told":"actor"}`, 20*time.Second)
	svc.WaitOutput(t, `echo {"told":"service"}`, 20*time.Second)
	if strings.Contains(svc.Output(), "sneaky") {
		t.Errorf("a plain JSON answer was run as a tail call:\n%s", svc.Output())
	}
}

// checkResult compares a client result with want, as JSON when both are.
func checkResult(t *testing.T, got map[string]string, key, want string) {
	t.Helper()
	g, ok := got[key]
	if !ok {
		t.Errorf("%s: no result", key)
		return
	}
	var gv, wv any
	if json.Unmarshal([]byte(g), &gv) == nil && json.Unmarshal([]byte(want), &wv) == nil {
		if !reflect.DeepEqual(gv, wv) {
			t.Errorf("%s = %s, want %s", key, g, want)
		}
		return
	}
	if g != want {
		t.Errorf("%s = %s, want %s", key, g, want)
	}
}
