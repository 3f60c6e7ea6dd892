package install

import (
	"bytes"
	"errors"
	"github.com/kar-runtime/kar/internal/testenv"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func runScript(t *testing.T, env []string, name string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	cmd := exec.Command(filepath.Join("..", "..", "scripts", name), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("running %s: %v", name, err)
	}
	return code, out.String(), errb.String()
}

// TestScriptsUsage: every script prints its usage with -h and exits 0.
func TestScriptsUsage(t *testing.T) {
	for _, s := range []string{"kar-k8s-deploy.sh", "kar-k8s-undeploy.sh", "kar-k8s-namespace-enable.sh", "kar-k8s-namespace-disable.sh",
		"kind-start.sh", "k3d-start.sh", "start-local-registry.sh"} {
		code, out, errOut := runScript(t, nil, s, "-h")
		if code != 0 || !strings.Contains(out, "Usage: "+s) {
			t.Errorf("%s -h: exit %d, stdout %q, stderr %q", s, code, out, errOut)
		}
	}
}

// TestScriptsMissingArguments: a missing argument is named, with usage, exit 2.
func TestScriptsMissingArguments(t *testing.T) {
	tests := []struct {
		script string
		args   []string
		want   string
	}{
		{"kar-k8s-namespace-enable.sh", nil, "missing argument: NAMESPACE"},
		{"kar-k8s-namespace-disable.sh", nil, "missing argument: NAMESPACE"},
		{"kar-k8s-namespace-enable.sh", []string{"-context", "x"}, "NAMESPACE must come first"},
		{"kar-k8s-deploy.sh", []string{"-m"}, "missing argument: -m needs a value"},
		{"kar-k8s-deploy.sh", []string{"-os", "-r"}, "missing argument: -r needs a value"},
		{"kar-k8s-deploy.sh", []string{"-registry", "-os"}, "missing argument: -registry needs a value"},
		{"kind-start.sh", []string{"extra"}, "unexpected argument extra"},
		{"k3d-start.sh", []string{"extra"}, "unexpected argument extra"},
		{"start-local-registry.sh", []string{"extra"}, "unexpected argument extra"},
	}
	for _, tt := range tests {
		code, _, errOut := runScript(t, nil, tt.script, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s %v: exit %d, stderr %q; want exit 2 and %q", tt.script, tt.args, code, errOut, tt.want)
		}
	}
}

// TestScriptsCallKar: the wrappers hand their arguments to `kar k8s ...`.
func TestScriptsCallKar(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kar")
	}
	env := []string{"KAR_BIN=" + karBinary(t), "KUBECONFIG=" + filepath.Join(t.TempDir(), "none")}
	tests := []struct {
		script string
		args   []string
		code   int
		want   string
	}{
		{"kar-k8s-deploy.sh", []string{"-r", "1 0"}, 2, "give a release version"},
		{"kar-k8s-deploy.sh", []string{"-node-ports", "-m", "creds.json"}, 2, "use one or the other"},
		{"kar-k8s-namespace-enable.sh", []string{"kube-system"}, 2, "kar never injects there"},
		{"kar-k8s-namespace-disable.sh", []string{"myns"}, 1, "no usable cluster"},
		{"kar-k8s-undeploy.sh", []string{"extra"}, 2, "unexpected argument"},
		{"kar-k8s-undeploy.sh", nil, 1, "no usable cluster"},
	}
	for _, tt := range tests {
		code, _, errOut := runScript(t, env, tt.script, tt.args...)
		if code != tt.code || !strings.Contains(errOut, tt.want) {
			t.Errorf("%s %v: exit %d, stderr %q; want exit %d and %q", tt.script, tt.args, code, errOut, tt.code, tt.want)
		}
	}
}

// karBinary is $KAR_BIN (scripts/test.sh builds it) or a fresh build of
// kar with kar-cloud beside it.
func karBinary(t *testing.T) string {
	t.Helper()
	return testenv.KarBin(t)
}
