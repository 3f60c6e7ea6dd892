package faults_test

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExecutions: the components' logs are counted per id across files,
// and a last line without its newline (a kill -9 mid-write) is not an
// execution.
func TestExecutions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  map[string]int
	}{
		{"empty", map[string]string{"a.log": ""}, map[string]int{}},
		{"one each", map[string]string{"a.log": "x\ny\n"}, map[string]int{"x": 1, "y": 1}},
		{"across files", map[string]string{"a.log": "x\n", "b.log": "x\nz\n"}, map[string]int{"x": 2, "z": 1}},
		{"cut short", map[string]string{"a.log": "x\ny"}, map[string]int{"x": 1}},
		{"not a log", map[string]string{"a.txt": "x\n"}, map[string]int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &cluster{t: t, logs: t.TempDir()}
			for name, body := range tc.files {
				if err := os.WriteFile(filepath.Join(c.logs, name), []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got := c.executions()
			if len(got) != len(tc.want) {
				t.Fatalf("executions = %v, want %v", got, tc.want)
			}
			for id, n := range tc.want {
				if got[id] != n {
					t.Errorf("executions[%q] = %d, want %d (all: %v)", id, got[id], n, got)
				}
			}
		})
	}
}
