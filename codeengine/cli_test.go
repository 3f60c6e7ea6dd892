package codeengine_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kar-runtime/kar/codeengine/cetest"
	"github.com/kar-runtime/kar/knative"
)

// The commands and scripts, run as processes with the built kar binary
// against the double, exactly as a user runs them.
func TestCLI(t *testing.T) {
	kar := cetest.KarBinary(t)
	scripts := filepath.Join(cetest.ModuleRoot(t), "scripts")
	const apiKey = "test-Api-Key-Very-Secret"
	secrets := []string{apiKey, cetest.RedisPassword, cetest.KafkaPassword}

	// run runs kar (or a script, when name ends in .sh) with the double's env.
	run := func(t *testing.T, d *cetest.Double, extraEnv []string, name string, args ...string) cetest.Result {
		t.Helper()
		env := append(d.Env(), "KAR_BIN="+kar)
		env = append(env, extraEnv...)
		var r cetest.Result
		if strings.HasSuffix(name, ".sh") {
			r = cetest.Run(t, env, filepath.Join(scripts, name), args...)
		} else {
			r = cetest.Run(t, env, kar, append([]string{name}, args...)...)
		}
		for _, s := range secrets {
			if strings.Contains(r.Stderr, s) || (name != "env" && strings.Contains(r.Stdout, s)) {
				t.Fatalf("%s %v printed a secret:\nstdout %s\nstderr %s", name, args, r.Stdout, r.Stderr)
			}
		}
		return r
	}
	expect := func(t *testing.T, r cetest.Result, code int, stdout, stderr string) {
		t.Helper()
		if r.Code != code || !strings.Contains(r.Stdout, stdout) || !strings.Contains(r.Stderr, stderr) {
			t.Fatalf("exit %d (want %d)\nstdout %q (want %q)\nstderr %q (want %q)", r.Code, code, r.Stdout, stdout, r.Stderr, stderr)
		}
	}
	// noUnexpectedErrors: the only 4xx the tooling may meet on a happy path
	// is the 404 of a GET probing for existence.
	noUnexpectedErrors := func(t *testing.T, d *cetest.Double) {
		t.Helper()
		for _, c := range d.Calls() {
			if c.Status >= 400 && !(c.Status == 404 && (c.Method == http.MethodGet || c.Method == http.MethodDelete)) {
				t.Errorf("%s %s answered %d", c.Method, c.Path, c.Status)
			}
			if strings.HasPrefix(c.Path, "/v2/projects") && c.Query.Get("version") == "" {
				t.Errorf("%s %s without version", c.Method, c.Path)
			}
		}
	}

	t.Run("env ibmcloud", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		d.AddKarCredential("kar-creds")
		d.AddResourceKey("other", cetest.RedisCRN, cetest.RedisCredentials())
		r := run(t, d, nil, "env", "ibmcloud", "kar-creds")
		expect(t, r, 0, "export REDIS_HOST='"+cetest.RedisHost+"'", "")
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		want := []string{"REDIS_ENABLE_TLS", "REDIS_CA", "REDIS_HOST", "REDIS_PORT", "REDIS_PASSWORD", "REDIS_USER",
			"KAFKA_VERSION", "KAFKA_ENABLE_TLS", "KAFKA_BROKERS", "KAFKA_PASSWORD"}
		if len(lines) != len(want) {
			t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), r.Stdout)
		}
		for i, k := range want {
			if !strings.HasPrefix(lines[i], "export "+k+"='") {
				t.Errorf("line %d = %q, want export %s='...'", i, lines[i], k)
			}
		}
		noUnexpectedErrors(t, d)
	})

	t.Run("source kar-env-ibmcloud.sh", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		d.AddKarCredential("kar-creds")
		env := append(d.Env(), "KAR_BIN="+kar)
		r := cetest.Run(t, env, "bash", "-c", `source "$1" kar-creds || exit 9; printf '%s|%s|%s|%s\n' "$REDIS_HOST" "$REDIS_PORT" "$KAFKA_BROKERS" "$KAFKA_ENABLE_TLS"; [ "$KAFKA_PASSWORD" = "$2" ] && echo password-ok`,
			"bash", filepath.Join(scripts, "kar-env-ibmcloud.sh"), cetest.KafkaPassword)
		expect(t, r, 0, cetest.RedisHost+"|31234|"+strings.Join(cetest.KafkaBrokers, ",")+"|true\npassword-ok", "")
		// A failure exports nothing and does not exit the sourcing shell.
		r = cetest.Run(t, env, "bash", "-c", `source "$1" no-such-creds; echo "status=$? host=${REDIS_HOST:-unset}"`,
			"bash", filepath.Join(scripts, "kar-env-ibmcloud.sh"))
		expect(t, r, 0, "status=1 host=unset", `no service credential named "no-such-creds"`)
		// Executed instead of sourced: a clear error.
		r = cetest.Run(t, env, filepath.Join(scripts, "kar-env-ibmcloud.sh"), "kar-creds")
		expect(t, r, 2, "", "must be sourced")
	})

	t.Run("failures of env ibmcloud", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		d.AddKarCredential("kar-creds")
		d.AddResourceKey("redis-only", cetest.RedisCRN, cetest.RedisCredentials())
		expect(t, run(t, d, []string{"IBMCLOUD_API_KEY=wrong-Key-1"}, "env", "ibmcloud", "kar-creds"), 1, "",
			"IBM Cloud IAM refused the API key: Provided API key could not be found. (check IBMCLOUD_API_KEY)")
		expect(t, run(t, d, []string{"IBMCLOUD_API_KEY="}, "env", "ibmcloud", "kar-creds"), 2, "", "set IBMCLOUD_API_KEY")
		expect(t, run(t, d, nil, "env", "ibmcloud", "nope"), 1, "", `no service credential named "nope"`)
		expect(t, run(t, d, nil, "env", "ibmcloud", "redis-only"), 1, "", "has no key for a Event Streams instance")
		expect(t, run(t, d, nil, "env", "ibmcloud"), 2, "", "give exactly one service credential name")
	})

	t.Run("project lifecycle", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		d.AddKarCredential("kar-creds")
		d.AddProject("someone-elses")
		r := run(t, d, nil, "ce", "project", "create", "-project", "kar-proj")
		expect(t, r, 0, "project kar-proj (id ", "project kar-proj: creating")
		if !strings.Contains(r.Stderr, "project kar-proj is active") || !strings.HasSuffix(strings.TrimSpace(r.Stdout), "active") {
			t.Fatalf("no progress to active:\n%s\n%s", r.Stdout, r.Stderr)
		}
		proj := []string{"KAR_CE_PROJECT=kar-proj"}

		r = run(t, d, proj, "kar-ce-project-enable.sh", "kar-creds")
		expect(t, r, 0, "secret kar.ibm.com.runtime-config created", "")
		sec := d.Secret("kar-proj", "kar.ibm.com.runtime-config")
		data := sec["data"].(map[string]any)
		for k, v := range map[string]string{"REDIS_HOST": cetest.RedisHost, "REDIS_PORT": "31234", "REDIS_PASSWORD": cetest.RedisPassword,
			"REDIS_USER": cetest.RedisUser, "REDIS_CA": cetest.RedisCA, "REDIS_ENABLE_TLS": "true", "KAFKA_ENABLE_TLS": "true",
			"KAFKA_BROKERS": strings.Join(cetest.KafkaBrokers, ","), "KAFKA_PASSWORD": cetest.KafkaPassword, "KAFKA_VERSION": "2.8.0"} {
			if data[k] != v {
				t.Errorf("secret %s = %v, want %q", k, data[k], v)
			}
		}
		if sec["format"] != "generic" || len(data) != 10 {
			t.Errorf("secret format %v, %d keys", sec["format"], len(data))
		}
		// Again, with the flag after the credential: replaced (PUT + If-Match).
		r = run(t, d, nil, "kar-ce-project-enable.sh", "kar-creds", "-project", "kar-proj")
		expect(t, r, 0, "secret kar.ibm.com.runtime-config replaced", "")

		expect(t, run(t, d, proj, "kar-ce-project-enable.sh", "missing-creds"), 1, "", `no service credential named "missing-creds"`)
		expect(t, run(t, d, nil, "kar-ce-project-enable.sh", "kar-creds"), 2, "", "use -project NAME or set KAR_CE_PROJECT")
		expect(t, run(t, d, nil, "kar-ce-project-enable.sh", "-project", "nope", "kar-creds"), 1, "",
			`no Code Engine project "nope" in region us-south: create it with`)
		expect(t, run(t, d, nil, "kar-ce-project-enable.sh"), 2, "", "usage:")

		r = run(t, d, nil, "kar-ce-project-disable.sh", "kar-proj")
		expect(t, r, 0, "project kar-proj disabled for kar", "")
		if d.Secret("kar-proj", "kar.ibm.com.runtime-config") != nil {
			t.Fatal("secret still there after disable")
		}
		expect(t, run(t, d, proj, "kar-ce-project-disable.sh"), 0, "was not enabled", "")

		expect(t, run(t, d, proj, "ce", "project", "delete"), 0, "project kar-proj (id ", "")
		if d.Project("kar-proj") != nil {
			t.Fatal("project still there after delete")
		}
		noUnexpectedErrors(t, d)

		var puts int
		for _, c := range d.Calls() {
			if c.Method == http.MethodPut {
				puts++
				if c.IfMatch == "" || c.ContentType != "application/json" {
					t.Errorf("PUT If-Match %q Content-Type %q", c.IfMatch, c.ContentType)
				}
			}
		}
		if puts != 1 {
			t.Errorf("%d PUTs, want 1 (the replace)", puts)
		}
	})

	t.Run("project creation fails", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		d.FailProjects["doomed"] = true
		expect(t, run(t, d, nil, "ce", "project", "create", "-project", "doomed"), 1, "", `project "doomed" is creation_failed`)
		expect(t, run(t, d, nil, "ce", "project", "create"), 2, "", "use -project NAME or set KAR_CE_PROJECT")
		expect(t, run(t, d, []string{"IBMCLOUD_API_KEY=bad"}, "ce", "project", "create", "-project", "x"), 1, "", "IAM refused the API key")
	})

	t.Run("app run and delete", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		d.AddKarCredential("kar-creds")
		d.AddProject("p")
		proj := []string{"KAR_CE_PROJECT=p"}
		args := []string{"-app", "shop", "-image", "us.icr.io/kar/cart:1", "-name", "cart", "-service", "cart",
			"-actors", "Cart,Order", "-port", "9000", "-scale", "3", "-env", "GREETING=hello world", "-env", "MODE=fast", "-v", "info"}

		expect(t, run(t, d, proj, "kar-ce-run.sh", args...), 1, "", "not enabled for kar")
		expect(t, run(t, d, proj, "kar-ce-project-enable.sh", "kar-creds"), 0, "enabled", "")

		r := run(t, d, proj, "kar-ce-run.sh", args...)
		expect(t, r, 0, "app cart in project p: ready, 3 instance(s), internal endpoint http://cart.", "app cart created")
		if strings.Contains(r.Stdout, "public endpoint") {
			t.Errorf("private app has a public endpoint: %s", r.Stdout)
		}
		app := d.App("p", "cart")
		for k, v := range map[string]any{"scale_min_instances": 3.0, "scale_max_instances": 3.0, "scale_initial_instances": 3.0,
			"image_port": 9000.0, "managed_domain_mappings": "local", "image_reference": "us.icr.io/kar/cart:1"} {
			if app[k] != v {
				t.Errorf("app %s = %v, want %v", k, app[k], v)
			}
		}
		env := map[string]string{}
		var refs []string
		for _, e := range app["run_env_variables"].([]any) {
			m := e.(map[string]any)
			if m["type"] == "literal" {
				env[m["name"].(string)] = m["value"].(string)
			} else {
				refs = append(refs, m["reference"].(string))
			}
		}
		for k, v := range map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "shop", "KAR_APP_PORT": "9000",
			"KAR_SERVICE": "cart", "KAR_VERBOSE": "info", "MODE": "fast"} {
			if env[k] != v {
				t.Errorf("env %s = %q, want %q", k, env[k], v)
			}
		}
		if strings.Join(refs, " ") != "kar.ibm.com.runtime-config kar.ibm.com.env.cart" {
			t.Errorf("secret references %q", refs)
		}
		envSecret := d.Secret("p", "kar.ibm.com.env.cart")["data"].(map[string]any)
		if envSecret["KAR_ACTORS"] != "Cart,Order" || envSecret["GREETING"] != "hello world" {
			t.Errorf("env secret %v", envSecret)
		}

		// Update: externalized, scale 2, no wait.
		r = run(t, d, proj, "kar-ce-run.sh", "-app", "shop", "-image", "us.icr.io/kar/cart:2", "-name", "cart",
			"-scale", "2", "-externalize", "-nowait")
		expect(t, r, 0, "app cart in project p: deploying, 2 instance(s)", "app cart updated")
		if !strings.Contains(r.Stdout, "public endpoint https://cart.") {
			t.Errorf("externalized app without public endpoint: %s", r.Stdout)
		}
		app = d.App("p", "cart")
		if app["managed_domain_mappings"] != "local_public" || app["scale_max_instances"] != 2.0 {
			t.Errorf("updated app %v", app)
		}
		if d.Secret("p", "kar.ibm.com.env.cart") != nil {
			t.Error("stale env secret kept")
		}
		var patches int
		for _, c := range d.Calls() {
			if c.Method == http.MethodPatch {
				patches++
				if c.ContentType != "application/merge-patch+json" || c.IfMatch == "" {
					t.Errorf("PATCH Content-Type %q If-Match %q", c.ContentType, c.IfMatch)
				}
			}
			if c.Method == http.MethodPost && c.Path != "/identity/token" && c.ContentType != "application/json" {
				t.Errorf("POST %s Content-Type %q", c.Path, c.ContentType)
			}
		}
		if patches != 1 {
			t.Errorf("%d PATCHes, want 1", patches)
		}
		noUnexpectedErrors(t, d)

		// Deployment failure: the platform's reason, and a hint.
		d.FailImages["us.icr.io/kar/missing:1"] = "fetch_image_failed_unknown_repository"
		r = run(t, d, proj, "kar-ce-run.sh", "-app", "shop", "-image", "us.icr.io/kar/missing:1", "-name", "broken")
		expect(t, r, 1, "", `app "broken" failed to deploy: status failed, reason no_revision_ready; revision broken-00001: failed fetch_image_failed_unknown_repository (check -image, and -registry-secret for a private registry)`)

		// Bad flags: clear, before any call.
		expect(t, run(t, d, proj, "kar-ce-run.sh", "-app", "shop", "-name", "Bad_Name"), 2, "", `-name "Bad_Name"`)
		expect(t, run(t, d, proj, "kar-ce-run.sh", "-app", "shop", "-image", "i", "-name", "x", "-env", "KAR_APP=y"), 2, "", "KAR_APP is set by kar itself: use -app")
		expect(t, run(t, d, proj, "kar-ce-run.sh", "-app", "shop", "-image", "i", "-name", "x", "-registry-secret", "nope"), 1, "", "-registry-secret nope: no such secret")

		expect(t, run(t, d, proj, "ce", "app", "delete", "-name", "cart"), 0, "app cart deleted from project p", "")
		if d.App("p", "cart") != nil {
			t.Fatal("app still there")
		}
		expect(t, run(t, d, proj, "ce", "app", "delete", "-name", "cart"), 0, "no app cart in project p", "")
		expect(t, run(t, d, proj, "ce", "app", "delete"), 2, "", "no -name")
	})

	t.Run("knative service", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		r := run(t, d, nil, "knative", "service", "-app", "shop", "-image", "img:1", "-name", "cart", "-actors", "Cart,Order", "-scale", "2", "-port", "9000", "-h2c")
		expect(t, r, 0, "kind: Service", "")
		svc, err := knative.Parse([]byte(r.Stdout))
		if err != nil {
			t.Fatal(err)
		}
		if err := knative.Validate(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
		if p := svc.Spec.Template.Spec.Containers[0].Ports[0]; p.Name != "h2c" || p.ContainerPort != 9000 {
			t.Errorf("port %+v", p)
		}
		expect(t, run(t, d, nil, "knative", "service", "-app", "shop", "-name", "cart", "-image", "i", "-port", "8012"), 2, "", "8012")
		expect(t, run(t, d, nil, "knative", "service", "-app", "shop", "-name", "cart", "-image", "i", "extra"), 2, "", "unexpected argument")
	})

	t.Run("app run autoscaled", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		d.AddKarCredential("kar-creds")
		d.AddProject("p")
		proj := []string{"KAR_CE_PROJECT=p"}
		expect(t, run(t, d, proj, "kar-ce-project-enable.sh", "kar-creds"), 0, "enabled", "")
		base := []string{"app", "run", "-app", "shop", "-image", "us.icr.io/kar/cart:1", "-name", "cart", "-service", "cart"}
		// Bad bounds: exit 2 with the flag to fix, and nothing deployed.
		for _, c := range []struct {
			args []string
			want string
		}{
			{[]string{"-min", "3", "-max", "2"}, "-min 3 is above -max 2"},
			{[]string{"-min", "-1", "-max", "2"}, "-min -1: give the fewest instances"},
			{[]string{"-max", "-1"}, "-max -1"},
			{[]string{"-min", "2"}, "-min 2 without -max"},
			{[]string{"-scale", "2", "-max", "3"}, "not both"},
			{[]string{"-max", "1001"}, "at most 1000"},
		} {
			expect(t, run(t, d, proj, "ce", append(base, c.args...)...), 2, "", c.want)
		}
		if d.App("p", "cart") != nil {
			t.Fatal("an app was deployed with bad bounds")
		}
		r := run(t, d, proj, "ce", append(base, "-min", "0", "-max", "5")...)
		expect(t, r, 0, "app cart in project p: ready, 0 to 5 instances, autoscaled: run kar ce autoscale -project p -app shop -name cart -service cart -min 0 -max 5", "app cart created")
		app := d.App("p", "cart")
		for k, v := range map[string]any{"scale_min_instances": 0.0, "scale_max_instances": 5.0, "scale_initial_instances": 0.0} {
			if app[k] != v {
				t.Errorf("app %s = %v, want %v", k, app[k], v)
			}
		}
		// From autoscaled back to a fixed scale.
		expect(t, run(t, d, proj, "ce", append(base, "-scale", "2")...), 0, "2 instance(s)", "app cart updated")
		if app := d.App("p", "cart"); app["scale_min_instances"] != 2.0 || app["scale_max_instances"] != 2.0 {
			t.Errorf("fixed again: %v", app)
		}
		noUnexpectedErrors(t, d)
	})

	t.Run("entrypoint", func(t *testing.T) {
		d := cetest.New(t, apiKey)
		dir := t.TempDir()
		script := filepath.Join(dir, "component")
		if err := os.WriteFile(script, []byte("#!/bin/sh\necho \"component $* app=$KAR_APP\"\nexit 7\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		path := []string{"PATH=" + dir + string(os.PathListSeparator) + os.Getenv("PATH")}
		// Not sidecar-in-container: the command alone, its exit code.
		r := run(t, d, append(path, "KAR_APP=shop"), "entrypoint", "--", "component", "a", "b")
		expect(t, r, 7, "component a b app=shop", "")
		expect(t, run(t, d, append(path, "KAR_SIDECAR_IN_CONTAINER=true"), "entrypoint", "--", "component"), 2, "", "KAR_APP is not set")
		expect(t, run(t, d, append(path, "KAR_SIDECAR_IN_CONTAINER=true", "KAR_APP=shop", "KAR_APP_PORT=x"), "entrypoint", "component"), 2, "", `KAR_APP_PORT="x" is not a port number`)
		expect(t, run(t, d, append(path, "KAR_SIDECAR_IN_CONTAINER=true", "KAR_APP=shop", "KAR_EXTRA_ARGS=-bogus 1", "KAR_CONFIG_DIR="+dir), "entrypoint", "component"), 2, "", "bogus")
		expect(t, run(t, d, nil, "entrypoint"), 2, "", "no command to run")
		expect(t, run(t, d, nil, "entrypoint", "--", "no-such-command-kar"), 127, "", `cannot run "no-such-command-kar"`)
	})
}
