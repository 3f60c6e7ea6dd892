package main

import (
	"strings"
	"testing"
)

// Bad command lines: exit code 2 and one line on stderr that says what is
// wrong, never the whole usage (issue 10), for every command that takes flags.
func TestBadCommandLines(t *testing.T) {
	cases := []struct {
		args []string
		says []string
	}{
		{[]string{"run", "-nope", "true"}, []string{"-nope", "kar help"}},
		{[]string{"rest", "--bogus", "get", "s", "p"}, []string{"-bogus", "kar help"}},
		{[]string{"invoke", "-x", "T", "i", "m"}, []string{"-x", "kar help"}},
		{[]string{"get", "-app", "a", "-zzz"}, []string{"-zzz", "kar help"}},
		{[]string{"purge", "-app", "a", "-yes"}, []string{"-yes", "kar help"}},
		{[]string{"drain", "-app", "a", "-now"}, []string{"-now", "kar help"}},
		{[]string{"run", "-app"}, []string{"-app", "argument"}},
		{[]string{"get", "-app", "a", "-o", "yaml"}, []string{`-o "yaml"`, "json"}},
		{[]string{"get", "-app", "a", "-o", "table"}, []string{`-o "table"`}},
		{[]string{"rest", "-app", "a", "-o", "yaml", "get", "s", "p"}, []string{`-o "yaml"`}},
		{[]string{"invoke", "-app", "a", "-o", "xml", "T", "i", "m"}, []string{`-o "xml"`}},
		{[]string{"get", "-app", "a", "-v", "loud"}, []string{`-v "loud"`}},
		{[]string{"get", "-app", "a", "-s", "bogus"}, []string{`-s "bogus"`}},
		{[]string{"run", "-app", "a", "-request_timeout", "soon", "true"}, []string{"-request_timeout", "milliseconds"}},
		{[]string{"run", "-app", "a", "-kafka_topic_config", "retention.ms", "true"}, []string{"-kafka_topic_config", "key=value"}},
		{[]string{"run", "-app", "a", "-v", "loud", "true"}, []string{`-v "loud"`}},
		{[]string{"fly"}, []string{`unknown command "fly"`, "kar help"}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			t.Setenv("KAR_EXTRA_ARGS", "")
			var out, errs strings.Builder
			code := dispatch(c.args, &out, &errs)
			msg := errs.String()
			if code != exitUsage || out.Len() != 0 {
				t.Errorf("exit %d, stdout %q; want 2 and nothing", code, out.String())
			}
			if strings.Count(msg, "\n") != 1 || !strings.HasPrefix(msg, "kar") {
				t.Errorf("stderr is not one line: %q", msg)
			}
			for _, s := range c.says {
				if !strings.Contains(msg, s) {
					t.Errorf("stderr %q does not say %q", msg, s)
				}
			}
		})
	}
}
