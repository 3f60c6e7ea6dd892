package codeengine_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kar-runtime/kar/codeengine/cetest"
	"github.com/kar-runtime/kar/entrypoint"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestHybridCloud is the whole managed-services path with real parts: a
// broker and redis-server set up as IBM's managed services are (TLS with a
// private CA, SASL PLAIN user token, Redis ACL user), service keys in the
// Resource Controller double pointing at them, `kar-ce-project-enable.sh`
// writing the runtime-config secret, a "Code Engine" component started
// with exactly the environment the app gets (secret + literals) through
// `kar entrypoint`, and a "laptop" that sources kar-env-ibmcloud.sh and
// calls it through the mesh.
func TestHybridCloud(t *testing.T) {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed")
	}
	root := cetest.ModuleRoot(t)
	greeter := filepath.Join(root, "examples", "service-hello-js")
	if _, err := os.Stat(filepath.Join(greeter, "node_modules", "express")); err != nil {
		t.Fatalf("run npm install in %s first (scripts/test.sh does): %v", greeter, err)
	}
	kar := cetest.KarBinary(t)
	const kafkaPassword, redisUser, redisPassword = "es-Secret-9", "ibm_cloud_user", "redis-Secret-9"
	certs := testenv.Certs(t)
	b := testenv.Backend(t, testenv.ManagedServices(certs, kafkaPassword, redisUser, redisPassword))

	d := cetest.New(t, "hybrid-key")
	redis := cetest.RedisCredentials()
	rediss := redis["connection"].(map[string]any)["rediss"].(map[string]any)
	rediss["hosts"] = []any{map[string]any{"hostname": b.RedisHost(), "port": b.RedisPort()}}
	rediss["authentication"] = map[string]any{"method": "direct", "username": redisUser, "password": redisPassword}
	rediss["certificate"] = map[string]any{"name": "ca", "certificate_base64": certs.CABase64(), "certificate_authority": "self_signed"}
	es := cetest.EventStreamsCredentials()
	es["kafka_brokers_sasl"] = []any{b.KafkaBrokers()}
	es["password"] = kafkaPassword
	d.AddResourceKey("kar-creds", cetest.RedisCRN, redis)
	d.AddResourceKey("kar-creds", cetest.EventStreamsCRN, es)
	d.AddProject("hybrid")

	// Event Streams certificates come from a public CA; ours is private,
	// so both sides trust it the way a system trust store would.
	trust := "KAFKA_CA=" + certs.CABase64()
	ceEnv := append(d.Env(), "KAR_BIN="+kar, "KAR_CE_PROJECT=hybrid")
	r := cetest.Run(t, ceEnv, filepath.Join(root, "scripts", "kar-ce-project-enable.sh"), "kar-creds")
	if r.Code != 0 {
		t.Fatalf("enable: %d\n%s\n%s", r.Code, r.Stdout, r.Stderr)
	}

	// The component's environment on Code Engine: the secret's keys, then
	// the literals kar ce app run sets.
	app := entrypoint.App{Component: entrypoint.Component{App: "hybrid", Service: "greeter", Port: testenv.FreePort(t)}, Name: "greeter", Image: "i", Scale: 1}
	var env []string
	for k, v := range d.Secret("hybrid", entrypoint.RuntimeConfigSecret)["data"].(map[string]any) {
		env = append(env, k+"="+v.(string))
	}
	for _, v := range app.AllEnv() {
		env = append(env, v.Name+"="+v.Value)
	}
	env = append(env, trust, "KAR_CONFIG_DIR="+t.TempDir())
	srv := testenv.Start(t, "code-engine", env, greeter, kar, "entrypoint", "--", "node", "server.js")
	srv.WaitOutput(t, "greeter listening on "+strconv.Itoa(app.Port), 30*time.Second)

	// The laptop: only the double's env (IBMCLOUD_API_KEY, endpoints) and the script.
	laptopEnv := append(d.Env(), "KAR_BIN="+kar, trust)
	laptop := testenv.Start(t, "laptop", laptopEnv, "", "bash", "-c",
		`source "$1" kar-creds || exit 9; exec "$2" rest -app hybrid -content_type text/plain post greeter helloText hybrid`,
		"bash", filepath.Join(root, "scripts", "kar-env-ibmcloud.sh"), kar)
	code, err := laptop.Wait(60 * time.Second)
	if err != nil || code != 0 || !strings.Contains(laptop.Output(), "Hello hybrid!") {
		t.Fatalf("laptop call: exit %d, %v\n%s", code, err, laptop.Output())
	}
	for _, out := range []string{srv.Output(), laptop.Output(), r.Stdout, r.Stderr} {
		for _, s := range []string{kafkaPassword, redisPassword, "hybrid-key"} {
			if strings.Contains(out, s) {
				t.Fatalf("a secret was printed:\n%s", out)
			}
		}
	}
	srv.Signal(syscall.SIGTERM)
	if _, err := srv.Wait(30 * time.Second); err != nil {
		t.Fatalf("component did not stop: %v", err)
	}
}
