package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestDirectRoute checks directRoute against ServeMux with the API's
// patterns around the call routes: where it takes a route, the mux takes
// the same one with the same path values.
func TestDirectRoute(t *testing.T) {
	var pattern string
	var values [3]string
	mux := http.NewServeMux()
	record := func(names ...string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			pattern, values = r.Pattern, [3]string{}
			for i, n := range names {
				values[i] = r.PathValue(n)
			}
		}
	}
	mux.HandleFunc("/kar/v1/service/{service}/call/{path...}", record("service", "path"))
	mux.HandleFunc("POST /kar/v1/actor/{type}/{id}/call/{method...}", record("type", "id", "method"))
	mux.HandleFunc("DELETE /kar/v1/actor/{type}/{id}", record())
	mux.HandleFunc("POST /kar/v1/actor/{type}/{id}/state/{key}", record())
	mux.HandleFunc("GET /kar/v1/actor/{type}/{id}/reminders/{reminderId}", record())
	mux.HandleFunc("POST /kar/v1/await", record())
	mux.HandleFunc("/", record())
	want := map[int]string{
		serviceRoute: "/kar/v1/service/{service}/call/{path...}",
		actorRoute:   "POST /kar/v1/actor/{type}/{id}/call/{method...}",
	}
	for _, c := range []struct {
		method, path string
		route        int
	}{
		{"GET", "/kar/v1/service/s/call/a", serviceRoute},
		{"GET", "/kar/v1/service/%41b/call/x%25", serviceRoute},
		{"POST", "/kar/v1/service/s/call/a/b?x=1", serviceRoute},
		{"PUT", "/kar/v1/service/s/call/", serviceRoute},
		{"DELETE", "/kar/v1/service/a%2Fb/call/c%2Fd/e", serviceRoute},
		{"PATCH", "/kar/v1/service/call/call/call", serviceRoute},
		{"GET", "/kar/v1/service/%2F/call/x", noRoute},
		{"GET", "/kar/v1/service/s/c%61ll/x", noRoute},
		{"GET", "/kar/v1/service/s/call", noRoute},
		{"GET", "/kar/v1/service/s", noRoute},
		{"GET", "/kar/v1/service//call/x", noRoute},
		{"POST", "/kar/v1/actor/T/1/call/m", actorRoute},
		{"POST", "/kar/v1/actor/T/1/call/m/n", actorRoute},
		{"POST", "/kar/v1/actor/T%20x/a%2Fb/call/m%2F", actorRoute},
		{"POST", "/kar/v1/actor/T/1/call/", actorRoute},
		{"POST", "/kar/v1/actor/call/call/call/call", actorRoute},
		{"POST", "/kar/v1/actor/T/%2F/call/m", noRoute},
		{"GET", "/kar/v1/actor/T/1/call/m", noRoute},
		{"POST", "/kar/v1/actor/T/1/state/k", noRoute},
		{"POST", "/kar/v1/actor/T/1/call", noRoute},
		{"POST", "/kar/v1/actor/T/call/m", noRoute},
		{"POST", "/kar/v1/await", noRoute},
	} {
		r := httptest.NewRequest(c.method, c.path, nil)
		route, v := directRoute(c.method, r.URL.EscapedPath())
		if route != c.route {
			t.Errorf("%s %s: route %d, want %d", c.method, c.path, route, c.route)
			continue
		}
		if route == noRoute {
			continue
		}
		pattern = ""
		mux.ServeHTTP(httptest.NewRecorder(), r)
		if pattern != want[route] || v != values {
			t.Errorf("%s %s: direct %q %q, mux %q %q", c.method, c.path, want[route], v, pattern, values)
		}
	}
}

func TestSlashed(t *testing.T) {
	for _, c := range []struct{ path, name, want string }{
		{"/kar/v1/actor/T/1/call/m", "m", "/m"},
		{"/kar/v1/actor/T/1/call/a/b", "a/b", "/a/b"},
		{"/kar/v1/actor/T/1/call/xm", "m", "/m"},
		{"/kar/v1/actor/T/1/call/", "", "/"},
		{"m", "m", "/m"},
	} {
		if got := slashed(c.path, c.name); got != c.want {
			t.Errorf("slashed(%q, %q) = %q, want %q", c.path, c.name, got, c.want)
		}
	}
}
