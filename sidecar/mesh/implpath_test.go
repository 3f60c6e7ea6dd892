package mesh

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/kar-runtime/kar/sidecar/httpx"
)

// TestImplPath checks the paths the sidecar calls on the component: each
// name stays one segment, and a component's router (Go's ServeMux, as in
// examples/actors-go) gets back exactly the names the caller gave.
// Express decodes its params the same way (decodeURIComponent); the
// end-to-end test with kar-sdk is in test/faults.
func TestImplPath(t *testing.T) {
	tests := []struct {
		name, typ, id, method string
		want                  string // "" when refused
	}{
		{"plain", "Counter", "c1", "incr", "/kar/impl/v1/actor/Counter/c1/incr"},
		{"dot-dot id", "T", "..", "m", "/kar/impl/v1/actor/T/%2E%2E/m"},
		{"dot id", "T", ".", "m", "/kar/impl/v1/actor/T/%2E/m"},
		{"dots inside id", "T", "a..b", "m", "/kar/impl/v1/actor/T/a..b/m"},
		{"three dots", "T", "...", "m", "/kar/impl/v1/actor/T/.../m"},
		{"dot-dot type", "..", "x", "m", "/kar/impl/v1/actor/%2E%2E/x/m"},
		{"slash in id", "T", "../../admin", "m", "/kar/impl/v1/actor/T/..%2F..%2Fadmin/m"},
		{"query in id", "T", "a?b=1#c", "m", "/kar/impl/v1/actor/T/a%3Fb=1%23c/m"},
		{"percent in id", "T", "%2E%2E", "m", "/kar/impl/v1/actor/T/%252E%252E/m"},
		{"space and unicode", "T", "a b ü", "m", "/kar/impl/v1/actor/T/a%20b%20%C3%BC/m"},
		{"query in method", "T", "x", "secret?q=1", "/kar/impl/v1/actor/T/x/secret%3Fq=1"},
		{"backslash in method", "T", "x", `..\admin`, `/kar/impl/v1/actor/T/x/..%5Cadmin`},
		{"method with slash", "T", "x", "../../admin", ""},
		{"method dot-dot", "T", "x", "..", ""},
		{"method dot", "T", "x", ".", ""},
		{"empty method", "T", "x", "", ""},
		{"decoded traversal method", "T", "..", "../../secret?q=1", ""},
		{"NUL in id", "T", "a\x00b", "m", ""},
		{"newline in id", "T", "a\r\nHost: x", "m", ""},
		{"invalid UTF-8 id", "T", "a\xffb", "m", ""},
		{"NUL in method", "T", "x", "m\x00", ""},
		{"invalid UTF-8 type", "\xc3", "x", "m", ""},
		{"empty id", "T", "", "m", ""},
		{"empty type", "", "x", "m", ""},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /kar/impl/v1/actor/{type}/{id}/{method}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got", url.PathEscape(r.PathValue("type"))+" "+url.PathEscape(r.PathValue("id"))+" "+url.PathEscape(r.PathValue("method")))
	})
	mux.HandleFunc("GET /kar/impl/v1/actor/{type}/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Got", url.PathEscape(r.PathValue("type"))+" "+url.PathEscape(r.PathValue("id")))
	})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ImplPath(tt.typ, tt.id, tt.method)
			if tt.want == "" {
				if !errors.Is(err, httpx.ErrBadName) {
					t.Fatalf("ImplPath(%q, %q, %q) = %q, %v; want ErrBadName", tt.typ, tt.id, tt.method, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ImplPath(%q, %q, %q) = %q, %v; want %q", tt.typ, tt.id, tt.method, got, err, tt.want)
			}
			// The sidecar's HTTP client sends the path as it is.
			u, err := url.Parse("http://127.0.0.1" + got)
			if err != nil || u.RequestURI() != got || u.RawQuery != "" || u.Fragment != "" {
				t.Fatalf("%q does not go on the request line unchanged: %v %q", got, err, u)
			}
			serve := func(method, path string, want ...string) {
				t.Helper()
				rec := httptest.NewRecorder()
				mux.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
				if rec.Code != http.StatusOK {
					t.Fatalf("%s %s: the component's mux answered %d (%s)", method, path, rec.Code, rec.Header().Get("Location"))
				}
				if g, w := rec.Header().Get("X-Got"), strings.Join(want, " "); g != w {
					t.Errorf("%s %s: the component got %q, want %q", method, path, g, w)
				}
			}
			serve(http.MethodPost, got, url.PathEscape(tt.typ), url.PathEscape(tt.id), url.PathEscape(tt.method))
			base, err := ImplInstancePath(tt.typ, tt.id)
			if err != nil || base+"/"+strings.TrimPrefix(got, base+"/") != got {
				t.Fatalf("ImplInstancePath(%q, %q) = %q, %v: not the prefix of %q", tt.typ, tt.id, base, err, got)
			}
			serve(http.MethodGet, base, url.PathEscape(tt.typ), url.PathEscape(tt.id))
		})
	}
}

// TestImplPathsRefusesWithoutSending: an actor request with a bad name
// (from a tail call, a reminder or an event) is answered 400 by the host.
func TestImplPathsRefuses(t *testing.T) {
	tests := []struct {
		name string
		env  Envelope
		base string
		path string
		bad  bool
	}{
		{"call", Envelope{ActorType: "T", ActorID: "..", Method: "POST", Path: "/m"}, "/kar/impl/v1/actor/T/%2E%2E", "/kar/impl/v1/actor/T/%2E%2E/m", false},
		{"delete", Envelope{ActorType: "T", ActorID: "a/b", Method: "DELETE"}, "/kar/impl/v1/actor/T/a%2Fb", "", false},
		{"traversal method", Envelope{ActorType: "T", ActorID: "x", Method: "POST", Path: "/../../admin"}, "", "", true},
		{"no method", Envelope{ActorType: "T", ActorID: "x", Method: "POST", Path: "/"}, "", "", true},
		{"NUL id delete", Envelope{ActorType: "T", ActorID: "\x00", Method: "DELETE"}, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, path, refused := implPaths(&tt.env)
			if tt.bad {
				if refused == nil || refused.Status != http.StatusBadRequest || !refused.Error || len(refused.Body) == 0 {
					t.Fatalf("implPaths = %q, %q, %+v; want a 400 answer", base, path, refused)
				}
				return
			}
			if refused != nil || base != tt.base || path != tt.path {
				t.Fatalf("implPaths = %q, %q, %+v; want %q, %q", base, path, refused, tt.base, tt.path)
			}
		})
	}
}
