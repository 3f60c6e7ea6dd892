package actorstate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
)

// step is one HTTP exchange and what must come back.
type step struct {
	method, path, body string
	status             int
	want               string // exact body, or JSON compared structurally when wantJSON
	wantJSON           bool
	wantContains       string // substring of the body (error messages)
}

func serve(t *testing.T, rdb redis.UniversalClient, opts ...Option) *httptest.Server {
	mux := http.NewServeMux()
	Register(mux, rdb, store.NewKeys("app"), opts...)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func run(t *testing.T, srv *httptest.Server, steps []step) {
	t.Helper()
	for i, s := range steps {
		var body io.Reader
		if s.body != "" {
			body = strings.NewReader(s.body)
		}
		req, err := http.NewRequest(s.method, srv.URL+s.path, body)
		if err != nil {
			t.Fatal(err)
		}
		res, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("step %d %s %s: %v", i, s.method, s.path, err)
		}
		got, _ := io.ReadAll(res.Body)
		res.Body.Close()
		name := fmt.Sprintf("step %d: %s %s %s", i, s.method, s.path, s.body)
		if res.StatusCode != s.status {
			t.Fatalf("%s: status %d, want %d (body %q)", name, res.StatusCode, s.status, got)
		}
		switch {
		case s.wantContains != "":
			if !strings.Contains(string(got), s.wantContains) {
				t.Fatalf("%s: body %q does not contain %q", name, got, s.wantContains)
			}
		case s.wantJSON:
			var g, w any
			if err := json.Unmarshal(got, &g); err != nil {
				t.Fatalf("%s: body %q is not JSON: %v", name, got, err)
			}
			if err := json.Unmarshal([]byte(s.want), &w); err != nil {
				t.Fatalf("%s: bad want %q: %v", name, s.want, err)
			}
			if !reflect.DeepEqual(normalize(g), normalize(w)) {
				t.Fatalf("%s: body %s, want %s", name, got, s.want)
			}
		default:
			if string(got) != s.want {
				t.Fatalf("%s: body %q, want %q", name, got, s.want)
			}
		}
	}
}

// normalize sorts string lists so key listings compare regardless of order.
func normalize(v any) any {
	switch x := v.(type) {
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			b, _ := json.Marshal(normalize(e))
			out = append(out, string(b))
		}
		sortStrings(out)
		return out
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
	}
	return v
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

const a = "/kar/v1/actor/Foo/1/state"

func TestStateRoutes(t *testing.T) {
	rdb := newClient(t, startRedis(t))
	srv := serve(t, rdb)

	tests := []struct {
		name  string
		steps []step
	}{
		{"single keys", []step{
			{method: "GET", path: a + "/k", status: 404, want: "Not Found\n"},
			{method: "GET", path: a + "/k?nilOnAbsent=true", status: 200, want: ""},
			{method: "HEAD", path: a + "/k", status: 404},
			{method: "PUT", path: a + "/k", body: `{"x": [1, 2]}`, status: 201},
			{method: "PUT", path: a + "/k", body: `{"x":[1,2,3]}`, status: 204},
			{method: "GET", path: a + "/k", status: 200, want: `{"x":[1,2,3]}`},
			{method: "GET", path: a + "/k?nilOnAbsent=true", status: 200, want: `{"x":[1,2,3]}`},
			{method: "HEAD", path: a + "/k", status: 200},
			{method: "PUT", path: a + "/n", body: `null`, status: 201},
			{method: "GET", path: a + "/n", status: 200, want: `null`},
			{method: "PUT", path: a + "/big", body: `12345678901234567890123`, status: 201},
			{method: "GET", path: a + "/big", status: 200, want: `12345678901234567890123`},
			{method: "DELETE", path: a + "/k", status: 200, want: "1"},
			{method: "DELETE", path: a + "/k", status: 200, want: "0"},
			{method: "DELETE", path: a + "/k?nilOnAbsent=true", status: 200, want: "0"},
			{method: "GET", path: a + "/k", status: 404, want: "Not Found\n"},
			{method: "DELETE", path: a, status: 200, want: "2"},
			{method: "GET", path: a, status: 200, want: `{}`, wantJSON: true},
		}},
		{"sub-maps", []step{
			{method: "GET", path: a + "/m/s", status: 404, want: "Not Found\n"},
			{method: "GET", path: a + "/m/s?nilOnAbsent=true", status: 200, want: ""},
			{method: "HEAD", path: a + "/m/s", status: 404},
			{method: "PUT", path: a + "/m/s", body: `"v1"`, status: 201},
			{method: "PUT", path: a + "/m/s", body: `"v2"`, status: 204},
			{method: "PUT", path: a + "/m/t", body: `{"deep":true}`, status: 201},
			{method: "GET", path: a + "/m/s", status: 200, want: `"v2"`},
			{method: "HEAD", path: a + "/m/s", status: 200},
			{method: "HEAD", path: a + "/m", status: 404}, // a sub-map is not a top-level key
			{method: "POST", path: a + "/m", body: `{"op":"get"}`, status: 200, want: `{"s":"v2","t":{"deep":true}}`, wantJSON: true},
			{method: "POST", path: a + "/m", body: `{"op":"keys"}`, status: 200, want: `["s","t"]`, wantJSON: true},
			{method: "POST", path: a + "/m", body: `{"op":"size"}`, status: 200, want: `2`},
			{method: "POST", path: a + "/none", body: `{"op":"keys"}`, status: 200, want: `[]`},
			{method: "POST", path: a + "/none", body: `{"op":"get"}`, status: 200, want: `{}`},
			{method: "POST", path: a + "/none", body: `{"op":"size"}`, status: 200, want: `0`},
			{method: "PUT", path: a + "/top", body: `7`, status: 201},
			{method: "GET", path: a, status: 200, want: `{"top":7,"m":{"s":"v2","t":{"deep":true}}}`, wantJSON: true},
			{method: "DELETE", path: a + "/m/s", status: 200, want: "1"},
			{method: "DELETE", path: a + "/m/s", status: 200, want: "0"},
			{method: "POST", path: a + "/m", body: `{"op":"clear"}`, status: 200, want: `1`},
			{method: "POST", path: a + "/m", body: `{"op":"clear"}`, status: 200, want: `0`},
			{method: "GET", path: a, status: 200, want: `{"top":7}`, wantJSON: true},
			{method: "DELETE", path: a, status: 200, want: "1"},
		}},
		{"multi-element update", []step{
			{method: "PUT", path: a + "/gone", body: `1`, status: 201},
			{method: "PUT", path: a + "/sm/gone", body: `1`, status: 201},
			{method: "POST", path: a, body: `{"updates":{"a":1,"b":{"c":[true]},"gone":2}}`, status: 200, want: `{"added":2,"removed":0}`},
			{method: "POST", path: a, body: `{"removals":["gone","nothing"],"submapremovals":{"sm":["gone","x"]},"submapupdates":{"sm2":{"p":"q","r":null}}}`, status: 200, want: `{"added":2,"removed":2}`},
			{method: "GET", path: a, status: 200, want: `{"a":1,"b":{"c":[true]},"sm2":{"p":"q","r":null}}`, wantJSON: true},
			{method: "POST", path: a + "/sm", body: `{"op":"size"}`, status: 200, want: `0`},
			// removals come before updates
			{method: "POST", path: a, body: `{"removals":["a"],"updates":{"a":5}}`, status: 200, want: `{"added":1,"removed":1}`},
			{method: "GET", path: a + "/a", status: 200, want: `5`},
			{method: "POST", path: a, body: `{}`, status: 200, want: `{"added":0,"removed":0}`},
			{method: "DELETE", path: a, status: 200, want: "4"},
			{method: "DELETE", path: a, status: 200, want: "0"},
		}},
		{"bad input", []step{
			{method: "PUT", path: a + "/k", body: `{"x":`, status: 400, wantContains: "not a JSON value"},
			{method: "PUT", path: a + "/k", body: ``, status: 400, wantContains: "body is empty"},
			{method: "PUT", path: a + "/m/s", body: `nope`, status: 400, wantContains: "not a JSON value"},
			{method: "POST", path: a, body: `[1]`, status: 400, wantContains: "not a state update"},
			{method: "POST", path: a, body: `{"update":{"a":1}}`, status: 400, wantContains: `unknown field "update"`},
			{method: "POST", path: a, body: `{"updates":{"a":1}} x`, status: 400, wantContains: "unexpected data"},
			{method: "POST", path: a + "/m", body: `{"op":"explode"}`, status: 400, wantContains: `unknown sub-map operation "explode"`},
			{method: "POST", path: a + "/m", body: `{op}`, status: 400, wantContains: "not a sub-map operation"},
			{method: "GET", path: a + "/k?nilOnAbsent=maybe", status: 400, wantContains: "nilOnAbsent"},
			{method: "PATCH", path: a + "/k", body: `1`, status: 405, want: "Method Not Allowed\n"},
			{method: "GET", path: a, status: 200, want: `{}`, wantJSON: true}, // nothing was written
		}},
		{"instances are separate", []step{
			{method: "PUT", path: "/kar/v1/actor/Foo/1/state/k", body: `1`, status: 201},
			{method: "PUT", path: "/kar/v1/actor/Foo/2/state/k", body: `2`, status: 201},
			{method: "PUT", path: "/kar/v1/actor/Bar/1/state/k", body: `3`, status: 201},
			{method: "DELETE", path: "/kar/v1/actor/Foo/1/state", status: 200, want: "1"},
			{method: "GET", path: "/kar/v1/actor/Foo/2/state/k", status: 200, want: `2`},
			{method: "GET", path: "/kar/v1/actor/Bar/1/state", status: 200, want: `{"k":3}`},
			{method: "DELETE", path: "/kar/v1/actor/Foo/2/state", status: 200, want: "1"},
			{method: "DELETE", path: "/kar/v1/actor/Bar/1/state", status: 200, want: "1"},
		}},
		{"odd keys", []step{
			{method: "PUT", path: a + "/a%20b", body: `1`, status: 201},
			{method: "PUT", path: a + "/a%2Fb", body: `2`, status: 201},
			{method: "PUT", path: a + "/%2A/%3F", body: `3`, status: 201},
			{method: "GET", path: a + "/a%2Fb", status: 200, want: `2`},
			{method: "GET", path: a, status: 200, want: `{"a b":1,"a/b":2,"*":{"?":3}}`, wantJSON: true},
			{method: "DELETE", path: a, status: 200, want: "3"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { run(t, srv, tc.steps) })
	}

	// Nothing is left behind in Redis once everything was deleted.
	keys, err := rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 0 {
		t.Fatalf("keys left in Redis: %v", keys)
	}
}

func TestCreatedLocation(t *testing.T) {
	srv := serve(t, newClient(t, startRedis(t)))
	req, _ := http.NewRequest("PUT", srv.URL+a+"/m/s", strings.NewReader(`1`))
	res, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 201 || res.Header.Get("Location") != a+"/m/s" {
		t.Fatalf("status %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestBodyLimit(t *testing.T) {
	srv := serve(t, newClient(t, startRedis(t)), WithMaxBodyBytes(64))
	big := `"` + strings.Repeat("x", 100) + `"`
	run(t, srv, []step{
		{method: "PUT", path: a + "/k", body: big, status: 413, wantContains: "larger than 64 bytes"},
		{method: "PUT", path: a + "/m/s", body: big, status: 413, wantContains: "larger than 64 bytes"},
		{method: "POST", path: a, body: `{"updates":{"k":` + big + `}}`, status: 413, wantContains: "larger than 64 bytes"},
		{method: "PUT", path: a + "/k", body: `"small"`, status: 201},
		{method: "HEAD", path: a + "/k", status: 200},
	})
}

func TestRedisDown(t *testing.T) {
	// A port nobody listens on: take a free one and close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret-pw", MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	srv := serve(t, rdb)
	for _, s := range []step{
		{method: "GET", path: a, status: 503},
		{method: "GET", path: a + "/k", status: 503},
		{method: "GET", path: a + "/k?nilOnAbsent=true", status: 503},
		{method: "HEAD", path: a + "/k", status: 503},
		{method: "PUT", path: a + "/k", body: `1`, status: 503},
		{method: "PUT", path: a + "/m/s", body: `1`, status: 503},
		{method: "DELETE", path: a + "/k", status: 503},
		{method: "DELETE", path: a + "/m/s", status: 503},
		{method: "DELETE", path: a, status: 503},
		{method: "POST", path: a, body: `{"updates":{"a":1}}`, status: 503},
		{method: "POST", path: a + "/m", body: `{"op":"get"}`, status: 503},
	} {
		if s.method != "HEAD" {
			s.wantContains = "unavailable"
		}
		run(t, srv, []step{s})
	}
	// The password never shows in an answer.
	res, err := srv.Client().Get(srv.URL + a)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(b), "s3cret-pw") {
		t.Fatalf("answer leaks the password: %q", b)
	}
}

func TestDeleteAll(t *testing.T) {
	rdb := newClient(t, startRedis(t))
	srv := serve(t, rdb)
	run(t, srv, []step{
		{method: "POST", path: a, body: `{"updates":{"a":1,"b":2},"submapupdates":{"m":{"x":1},"n":{"y":2,"z":3}}}`, status: 200, want: `{"added":5,"removed":0}`},
		{method: "PUT", path: "/kar/v1/actor/Foo/other/state/k", body: `1`, status: 201},
	})
	ctx := context.Background()
	keys := store.NewKeys("app")
	if err := DeleteAll(ctx, rdb, keys, "Foo", "1"); err != nil {
		t.Fatal(err)
	}
	if err := DeleteAll(ctx, rdb, keys, "Foo", "1"); err != nil {
		t.Fatalf("second DeleteAll: %v", err)
	}
	left, _ := rdb.Keys(ctx, "*").Result()
	if len(left) != 1 || left[0] != keys.ActorState("Foo", "other") {
		t.Fatalf("keys left: %v", left)
	}
}
