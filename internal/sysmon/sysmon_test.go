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
// Setting in, so that a sidecar does not start twice (Exec).
func TestBuildsLinkSetting(t *testing.T) {
	for _, f := range []string{"Makefile", "Dockerfile", "scripts/test.sh"} {
		b, err := os.ReadFile(filepath.Join("..", "..", f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), LinkerFlags) {
			t.Errorf("%s does not build kar with %q", f, LinkerFlags)
		}
	}
}
