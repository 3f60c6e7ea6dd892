package testenv

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sort"
	"strings"
	"testing"
)

// Step is one HTTP exchange of a table-driven route test and what must
// come back.
type Step struct {
	Method, Path, Body string
	Status             int
	Want               string // exact body, or JSON compared structurally when WantJSON
	WantJSON           bool
	WantContains       string // substring of the body (error messages)
}

// StepOption changes how RunSteps compares.
type StepOption int

// UnorderedLists compares JSON lists regardless of their order (key listings).
const UnorderedLists StepOption = 1

// RunSteps sends each step to srv in turn and fails the test at the first
// answer that differs.
func RunSteps(t testing.TB, srv *httptest.Server, steps []Step, opts ...StepOption) {
	t.Helper()
	unordered := len(opts) > 0 && opts[0] == UnorderedLists
	for i, s := range steps {
		var body io.Reader
		if s.Body != "" {
			body = strings.NewReader(s.Body)
		}
		req, err := http.NewRequest(s.Method, srv.URL+s.Path, body)
		if err != nil {
			t.Fatal(err)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("step %d %s %s: %v", i, s.Method, s.Path, err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		name := fmt.Sprintf("step %d: %s %s %s", i, s.Method, s.Path, s.Body)
		if res.StatusCode != s.Status {
			t.Fatalf("%s: status %d, want %d (body %q)", name, res.StatusCode, s.Status, got)
		}
		switch {
		case s.WantContains != "":
			if !strings.Contains(string(got), s.WantContains) {
				t.Fatalf("%s: body %q does not contain %q", name, got, s.WantContains)
			}
		case s.WantJSON:
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s: body %q is not JSON: %v", name, got, err)
			}
			if err := json.Unmarshal([]byte(s.Want), &w); err != nil {
				t.Fatalf("%s: bad want %q: %v", name, s.Want, err)
			}
			if unordered {
				g, w = sortLists(g), sortLists(w)
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("%s: body %s, want %s", name, got, s.Want)
			}
		default:
			if string(got) != s.Want {
				t.Fatalf("%s: body %q, want %q", name, got, s.Want)
			}
		}
	}
}

// sortLists sorts JSON lists so that listings compare regardless of order.
func sortLists(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			b, _ := json.Marshal(sortLists(e))
			out = append(out, string(b))
		}
		sort.Strings(out)
		return out
	case map[string]any:
		for k, e := range x {
			x[k] = sortLists(e)
		}
	}
	return v
}
