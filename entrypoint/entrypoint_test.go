package entrypoint

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/kar-runtime/kar/sidecar/config"
)

func envOf(m map[string]string) Lookup {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func TestNewPlan(t *testing.T) {
	cases := []struct {
		name    string
		env     map[string]string
		args    []string
		want    Plan
		wantErr string
	}{
		{
			name: "not in sidecar mode: exec the command alone",
			env:  map[string]string{},
			args: []string{"--", "node", "server.js"},
			want: Plan{Command: []string{"node", "server.js"}},
		},
		{
			name: "explicit false",
			env:  map[string]string{"KAR_SIDECAR_IN_CONTAINER": "false", "KAR_APP": "x"},
			args: []string{"app"},
			want: Plan{Command: []string{"app"}},
		},
		{
			name: "sidecar mode without --",
			env:  map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "shop"},
			args: []string{"node", "server.js", "-x"},
			want: Plan{Sidecar: true, Command: []string{"node", "server.js", "-x"},
				RunArgs: []string{"-app", "shop", "--", "node", "server.js", "-x"}},
		},
		{
			name: "extra args are split into flags before the command",
			env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "TRUE", "KAR_APP": "shop",
				"KAR_EXTRA_ARGS": " -service cart  -actors Cart,Order -v info ", "KAR_APP_PORT": "9000"},
			args: []string{"--", "./app"},
			want: Plan{Sidecar: true, Command: []string{"./app"},
				RunArgs: []string{"-app", "shop", "-service", "cart", "-actors", "Cart,Order", "-v", "info", "--", "./app"}},
		},
		{name: "no command", env: map[string]string{}, args: []string{"--"}, wantErr: "no command to run"},
		{name: "no args", env: map[string]string{}, wantErr: "no command to run"},
		{name: "bad mode", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "yes please"}, args: []string{"a"}, wantErr: "KAR_SIDECAR_IN_CONTAINER=\"yes please\": want true or false"},
		{name: "missing app", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true"}, args: []string{"a"}, wantErr: "KAR_APP is not set"},
		{name: "bad app", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "my app"}, args: []string{"a"}, wantErr: "KAR_APP: application name"},
		{name: "bad app port", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_APP_PORT": "80a"}, args: []string{"a"}, wantErr: `KAR_APP_PORT="80a" is not a port number`},
		{name: "app port out of range", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_APP_PORT": "70000"}, args: []string{"a"}, wantErr: "KAR_APP_PORT=\"70000\""},
		{name: "bad runtime port", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_RUNTIME_PORT": "-1"}, args: []string{"a"}, wantErr: "KAR_RUNTIME_PORT"},
		{name: "bad service", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_SERVICE": "a/b"}, args: []string{"a"}, wantErr: "KAR_SERVICE"},
		{name: "bad level", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_VERBOSE": "loud"}, args: []string{"a"}, wantErr: "KAR_VERBOSE=\"loud\" is not a log level"},
		{name: "bad h2c", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_H2C": "maybe"}, args: []string{"a"}, wantErr: "KAR_H2C"},
		{name: "command in extra args", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_EXTRA_ARGS": "node x.js"}, args: []string{"a"}, wantErr: "KAR_EXTRA_ARGS=\"node x.js\" must start with a flag"},
		{name: "dashdash in extra args", env: map[string]string{"KAR_SIDECAR_IN_CONTAINER": "true", "KAR_APP": "a", "KAR_EXTRA_ARGS": "-v info -- x"}, args: []string{"a"}, wantErr: "KAR_EXTRA_ARGS may hold only kar run flags"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NewPlan(envOf(tc.env), tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("plan = %#v\nwant %#v", got, tc.want)
			}
		})
	}
}

// TestComponentEnvRoundTrip: what a deployment sets is what kar run reads.
func TestComponentEnvRoundTrip(t *testing.T) {
	c := Component{App: "shop", Service: "cart", Actors: []string{"Cart", "Order"}, Port: 9090, Verbose: "info", H2C: true}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"KAR_CONFIG_DIR": t.TempDir()}
	for _, v := range c.Env() {
		env[v.Name] = v.Value
		if strings.ContainsAny(v.Value, " ") {
			t.Errorf("%s=%q holds a space; Code Engine documents literal values as ^[-._a-zA-Z0-9]+$", v.Name, v.Value)
		}
	}
	// Clear what the host may have set, then apply the component's env.
	for _, k := range []string{"KAR_EXTRA_ARGS", "KAR_RUNTIME_PORT", "KAFKA_BROKERS", "REDIS_PORT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	plan, err := NewPlan(os.LookupEnv, []string{"--", "node", "server.js"})
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Sidecar {
		t.Fatal("component env did not select sidecar mode")
	}
	if err := Check(plan.RunArgs); err != nil {
		t.Fatal(err)
	}
	var cfg config.Run
	rest, err := config.Load(&cfg, "run", plan.RunArgs, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.App != "shop" || cfg.Service != "cart" || !reflect.DeepEqual(cfg.Actors, []string{"Cart", "Order"}) ||
		cfg.AppPort != 9090 || cfg.Verbose != "info" || !cfg.H2C {
		t.Fatalf("kar run would see %+v", cfg)
	}
	if !reflect.DeepEqual(rest, []string{"node", "server.js"}) {
		t.Fatalf("command = %q", rest)
	}
}

func TestCheckRejectsBadExtraFlag(t *testing.T) {
	t.Setenv("KAR_CONFIG_DIR", t.TempDir())
	t.Setenv("KAR_EXTRA_ARGS", "")
	err := Check([]string{"-app", "a", "-no_such_flag", "--", "x"})
	if err == nil || !strings.Contains(err.Error(), "no_such_flag") {
		t.Fatalf("error = %v, want it to name the flag", err)
	}
	err = Check([]string{"-app", "a", "-app_port", "0", "--", "x"})
	if err == nil || !strings.Contains(err.Error(), "app_port") {
		t.Fatalf("error = %v, want it to name -app_port", err)
	}
}

func TestComponentValidate(t *testing.T) {
	cases := []struct {
		c       Component
		wantErr string
	}{
		{Component{App: "a"}, ""},
		{Component{}, "no application name"},
		{Component{App: "a", Port: 70000}, "-port 70000"},
		{Component{App: "a", Service: "x y"}, "-service"},
		{Component{App: "a", Actors: []string{"A", ""}}, "empty actor type"},
		{Component{App: "a", Verbose: "chatty"}, "-v \"chatty\""},
	}
	for _, tc := range cases {
		err := tc.c.Validate()
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%+v: error = %v, want %q", tc.c, err, tc.wantErr)
		}
	}
}

func TestParseEnvFlag(t *testing.T) {
	cases := []struct {
		in      string
		want    Var
		wantErr string
	}{
		{"A=b c", Var{"A", "b c"}, ""},
		{"A=", Var{"A", ""}, ""},
		{"A==x", Var{"A", "=x"}, ""},
		{"A", Var{}, "want NAME=VALUE"},
		{"1A=x", Var{}, "variable name"},
		{"KAR_APP=x", Var{}, "use -app"},
		{"PORT=1", Var{}, "Knative sets it"},
	}
	for _, tc := range cases {
		got, err := ParseEnvFlag(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%q: error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %v, %v", tc.in, got, err)
		}
	}
}

// TestExec runs the test binary as a helper that execs a real command:
// the process image is replaced (same PID) and the environment kept.
func TestExec(t *testing.T) {
	if os.Getenv("ENTRYPOINT_EXEC_HELPER") == "1" {
		err := Exec(strings.Fields(os.Getenv("ENTRYPOINT_EXEC_CMD")))
		os.Stderr.WriteString("exec failed: " + err.Error())
		os.Exit(3)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	script := filepath.Join(t.TempDir(), "show")
	if err := os.WriteFile(script, []byte("#!"+sh+"\necho \"pid=$$ marker=$MARKER args=$*\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestExec$")
	cmd.Env = append(os.Environ(), "ENTRYPOINT_EXEC_HELPER=1", "ENTRYPOINT_EXEC_CMD=show one two", "MARKER=kept",
		"PATH="+filepath.Dir(script)+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v", err)
	}
	want := "marker=kept args=one two"
	if !strings.Contains(string(out), want) {
		t.Fatalf("output %q, want %q", out, want)
	}
	if !strings.Contains(string(out), "pid="+itoa(cmd.Process.Pid)+" ") {
		t.Fatalf("output %q: the command did not replace the process (pid %d)", out, cmd.Process.Pid)
	}

	cmd = exec.Command(os.Args[0], "-test.run=^TestExec$")
	cmd.Env = append(os.Environ(), "ENTRYPOINT_EXEC_HELPER=1", "ENTRYPOINT_EXEC_CMD=no-such-command-kar")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	if err == nil || !strings.Contains(stderr.String(), `cannot run "no-such-command-kar"`) {
		t.Fatalf("err %v, stderr %q", err, stderr.String())
	}
}

func itoa(n int) string { return strconv.Itoa(n) }
