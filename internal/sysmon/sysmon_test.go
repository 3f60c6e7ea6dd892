package sysmon

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestGODEBUGSettings(t *testing.T) {
	for _, c := range []struct {
		godebug    string
		rest       string
		ours       bool
		schedtrace bool
	}{
		{"", "", false, false},
		{"schedtrace=2147483647", "", true, true},
		{"madvdontneed=1,schedtrace=2147483647", "madvdontneed=1", true, true},
		{"schedtrace=2147483647,gctrace=1", "gctrace=1", true, true},
		{"schedtrace=1000", "schedtrace=1000", false, true},
		{"gctrace=1", "gctrace=1", false, false},
		{"xschedtrace=5", "xschedtrace=5", false, false},
	} {
		rest, ours := withoutSetting(c.godebug, Setting)
		if rest != c.rest || ours != c.ours {
			t.Errorf("withoutSetting(%q) = %q, %v; want %q, %v", c.godebug, rest, ours, c.rest, c.ours)
		}
		if got := hasSetting(c.godebug, "schedtrace"); got != c.schedtrace {
			t.Errorf("hasSetting(%q, schedtrace) = %v, want %v", c.godebug, got, c.schedtrace)
		}
	}
}

func TestEnv(t *testing.T) {
	for _, c := range []struct {
		env  []string
		want string // its GODEBUG after Env
	}{
		{[]string{"A=1"}, "GODEBUG=" + Setting},
		{[]string{"GODEBUG=gctrace=1", "A=1"}, "GODEBUG=gctrace=1," + Setting},
		{[]string{"GODEBUG=schedtrace=0"}, "GODEBUG=schedtrace=0"},
	} {
		var got []string
		for _, kv := range Env(c.env) {
			if strings.HasPrefix(kv, "GODEBUG=") {
				got = append(got, kv)
			}
		}
		if len(got) != 1 || got[0] != c.want {
			t.Errorf("Env(%q) has %q, want %q", c.env, got, c.want)
		}
	}
}

// TestBuildsLinkSetting: every build of kar that ships or is tested links
// Setting in, so that a sidecar does not start twice (Exec). One recipe,
// scripts/build.sh, has LinkerFlags; the Makefile, the Dockerfile and the
// scripts build kar only through it.
func TestBuildsLinkSetting(t *testing.T) {
	root := filepath.Join("..", "..")
	recipe, err := os.ReadFile(filepath.Join(root, "scripts", "build.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(recipe), LinkerFlags) {
		t.Errorf("scripts/build.sh does not build kar with %q", LinkerFlags)
	}
	scripts, err := filepath.Glob(filepath.Join(root, "scripts", "*.sh"))
	if err != nil {
		t.Fatal(err)
	}
	builders := 0
	for _, f := range append(scripts, filepath.Join(root, "Makefile"), filepath.Join(root, "Dockerfile"), filepath.Join(root, ".ci", "run")) {
		if filepath.Base(f) == "build.sh" {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		// A command continued over lines (a Dockerfile's RUN) is one line.
		text := strings.ReplaceAll(string(b), "\\\n", " ")
		for i, line := range strings.Split(text, "\n") {
			if strings.Contains(line, "go build") && strings.Contains(line, "./cmd/") {
				t.Errorf("%s, command %d, builds kar's commands itself (%s): call scripts/build.sh", f, i+1, strings.TrimSpace(line))
			}
		}
		if strings.Contains(string(b), "scripts/build.sh") {
			builders++
		}
	}
	if builders == 0 {
		t.Error("nothing calls scripts/build.sh")
	}
}
