package main

import (
	"strings"
	"testing"
)

// A command handed to a companion binary that is neither next to kar nor
// on PATH says which binary is missing and how to build it. (That the
// hand-off itself works, other tests show by running the commands through
// the kar binary: cmd/kar-dev's `kar dev`, codeengine's `kar ce`.)
func TestHandOffWithoutItsBinary(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	for _, c := range []struct{ command, binary string }{
		{"dev", "kar-dev"}, {"k8s", "kar-cloud"}, {"ce", "kar-cloud"}, {"knative", "kar-cloud"}, {"env", "kar-cloud"},
	} {
		t.Run(c.command, func(t *testing.T) {
			var out, errs strings.Builder
			code := dispatch([]string{c.command, "-h"}, &out, &errs)
			want := "kar " + c.command + ": needs the " + c.binary + " binary next to kar or on PATH"
			if code != exitUsage || out.Len() != 0 || !strings.HasPrefix(errs.String(), want) {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d and %q", code, out.String(), errs.String(), exitUsage, want)
			}
		})
	}
}
