package actorstate

import (
	"context"
	"github.com/kar-runtime/kar/internal/testenv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
)

type step = testenv.Step

func serve(t *testing.T, rdb redis.UniversalClient, opts ...Option) *httptest.Server {
	mux := http.NewServeMux()
	Register(mux, rdb, store.NewKeys("app"), opts...)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
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
			{Method: "GET", Path: a + "/k", Status: 404, Want: "Not Found\n"},
			{Method: "GET", Path: a + "/k?nilOnAbsent=true", Status: 200, Want: ""},
			{Method: "HEAD", Path: a + "/k", Status: 404},
			{Method: "PUT", Path: a + "/k", Body: `{"x": [1, 2]}`, Status: 201},
			{Method: "PUT", Path: a + "/k", Body: `{"x":[1,2,3]}`, Status: 204},
			{Method: "GET", Path: a + "/k", Status: 200, Want: `{"x":[1,2,3]}`},
			{Method: "GET", Path: a + "/k?nilOnAbsent=true", Status: 200, Want: `{"x":[1,2,3]}`},
			{Method: "HEAD", Path: a + "/k", Status: 200},
			{Method: "PUT", Path: a + "/n", Body: `null`, Status: 201},
			{Method: "GET", Path: a + "/n", Status: 200, Want: `null`},
			{Method: "PUT", Path: a + "/big", Body: `12345678901234567890123`, Status: 201},
			{Method: "GET", Path: a + "/big", Status: 200, Want: `12345678901234567890123`},
			{Method: "DELETE", Path: a + "/k", Status: 200, Want: "1"},
			{Method: "DELETE", Path: a + "/k", Status: 200, Want: "0"},
			{Method: "DELETE", Path: a + "/k?nilOnAbsent=true", Status: 200, Want: "0"},
			{Method: "GET", Path: a + "/k", Status: 404, Want: "Not Found\n"},
			{Method: "DELETE", Path: a, Status: 200, Want: "2"},
			{Method: "GET", Path: a, Status: 200, Want: `{}`, WantJSON: true},
		}},
		{"sub-maps", []step{
			{Method: "GET", Path: a + "/m/s", Status: 404, Want: "Not Found\n"},
			{Method: "GET", Path: a + "/m/s?nilOnAbsent=true", Status: 200, Want: ""},
			{Method: "HEAD", Path: a + "/m/s", Status: 404},
			{Method: "PUT", Path: a + "/m/s", Body: `"v1"`, Status: 201},
			{Method: "PUT", Path: a + "/m/s", Body: `"v2"`, Status: 204},
			{Method: "PUT", Path: a + "/m/t", Body: `{"deep":true}`, Status: 201},
			{Method: "GET", Path: a + "/m/s", Status: 200, Want: `"v2"`},
			{Method: "HEAD", Path: a + "/m/s", Status: 200},
			{Method: "HEAD", Path: a + "/m", Status: 404}, // a sub-map is not a top-level key
			{Method: "POST", Path: a + "/m", Body: `{"op":"get"}`, Status: 200, Want: `{"s":"v2","t":{"deep":true}}`, WantJSON: true},
			{Method: "POST", Path: a + "/m", Body: `{"op":"keys"}`, Status: 200, Want: `["s","t"]`, WantJSON: true},
			{Method: "POST", Path: a + "/m", Body: `{"op":"size"}`, Status: 200, Want: `2`},
			{Method: "POST", Path: a + "/none", Body: `{"op":"keys"}`, Status: 200, Want: `[]`},
			{Method: "POST", Path: a + "/none", Body: `{"op":"get"}`, Status: 200, Want: `{}`},
			{Method: "POST", Path: a + "/none", Body: `{"op":"size"}`, Status: 200, Want: `0`},
			{Method: "PUT", Path: a + "/top", Body: `7`, Status: 201},
			{Method: "GET", Path: a, Status: 200, Want: `{"top":7,"m":{"s":"v2","t":{"deep":true}}}`, WantJSON: true},
			{Method: "DELETE", Path: a + "/m/s", Status: 200, Want: "1"},
			{Method: "DELETE", Path: a + "/m/s", Status: 200, Want: "0"},
			{Method: "POST", Path: a + "/m", Body: `{"op":"clear"}`, Status: 200, Want: `1`},
			{Method: "POST", Path: a + "/m", Body: `{"op":"clear"}`, Status: 200, Want: `0`},
			{Method: "GET", Path: a, Status: 200, Want: `{"top":7}`, WantJSON: true},
			{Method: "DELETE", Path: a, Status: 200, Want: "1"},
		}},
		{"multi-element update", []step{
			{Method: "PUT", Path: a + "/gone", Body: `1`, Status: 201},
			{Method: "PUT", Path: a + "/sm/gone", Body: `1`, Status: 201},
			{Method: "POST", Path: a, Body: `{"updates":{"a":1,"b":{"c":[true]},"gone":2}}`, Status: 200, Want: `{"added":2,"removed":0}`},
			{Method: "POST", Path: a, Body: `{"removals":["gone","nothing"],"submapremovals":{"sm":["gone","x"]},"submapupdates":{"sm2":{"p":"q","r":null}}}`, Status: 200, Want: `{"added":2,"removed":2}`},
			{Method: "GET", Path: a, Status: 200, Want: `{"a":1,"b":{"c":[true]},"sm2":{"p":"q","r":null}}`, WantJSON: true},
			{Method: "POST", Path: a + "/sm", Body: `{"op":"size"}`, Status: 200, Want: `0`},
			// removals come before updates
			{Method: "POST", Path: a, Body: `{"removals":["a"],"updates":{"a":5}}`, Status: 200, Want: `{"added":1,"removed":1}`},
			{Method: "GET", Path: a + "/a", Status: 200, Want: `5`},
			{Method: "POST", Path: a, Body: `{}`, Status: 200, Want: `{"added":0,"removed":0}`},
			{Method: "DELETE", Path: a, Status: 200, Want: "4"},
			{Method: "DELETE", Path: a, Status: 200, Want: "0"},
		}},
		{"bad input", []step{
			{Method: "PUT", Path: a + "/k", Body: `{"x":`, Status: 400, WantContains: "not a JSON value"},
			{Method: "PUT", Path: a + "/k", Body: ``, Status: 400, WantContains: "body is empty"},
			{Method: "PUT", Path: a + "/m/s", Body: `nope`, Status: 400, WantContains: "not a JSON value"},
			{Method: "POST", Path: a, Body: `[1]`, Status: 400, WantContains: "not a state update"},
			// Unknown fields are ignored as KAR ignores them (KAR's Python
			// SDK sends {"field1": 43}); nothing is written.
			{Method: "POST", Path: a, Body: `{"field1": 43}`, Status: 200, Want: `{"added":0,"removed":0}`, WantJSON: true},
			{Method: "POST", Path: a, Body: `{"update":{"a":1},"removals":["k"]}`, Status: 200, Want: `{"added":0,"removed":0}`, WantJSON: true},
			{Method: "POST", Path: a, Body: `{"updates":5}`, Status: 400, WantContains: "not a state update"},
			{Method: "POST", Path: a, Body: `"field1"`, Status: 400, WantContains: "not a state update"},
			{Method: "POST", Path: a, Body: `{"updates":{"a":1}} x`, Status: 400, WantContains: "unexpected data"},
			{Method: "POST", Path: a + "/m", Body: `{"op":"explode"}`, Status: 400, WantContains: `unknown sub-map operation "explode"`},
			{Method: "POST", Path: a + "/m", Body: `{op}`, Status: 400, WantContains: "not a sub-map operation"},
			{Method: "GET", Path: a + "/k?nilOnAbsent=maybe", Status: 400, WantContains: "nilOnAbsent"},
			{Method: "PATCH", Path: a + "/k", Body: `1`, Status: 405, Want: "Method Not Allowed\n"},
			{Method: "GET", Path: a, Status: 200, Want: `{}`, WantJSON: true}, // nothing was written
		}},
		{"instances are separate", []step{
			{Method: "PUT", Path: "/kar/v1/actor/Foo/1/state/k", Body: `1`, Status: 201},
			{Method: "PUT", Path: "/kar/v1/actor/Foo/2/state/k", Body: `2`, Status: 201},
			{Method: "PUT", Path: "/kar/v1/actor/Bar/1/state/k", Body: `3`, Status: 201},
			{Method: "DELETE", Path: "/kar/v1/actor/Foo/1/state", Status: 200, Want: "1"},
			{Method: "GET", Path: "/kar/v1/actor/Foo/2/state/k", Status: 200, Want: `2`},
			{Method: "GET", Path: "/kar/v1/actor/Bar/1/state", Status: 200, Want: `{"k":3}`},
			{Method: "DELETE", Path: "/kar/v1/actor/Foo/2/state", Status: 200, Want: "1"},
			{Method: "DELETE", Path: "/kar/v1/actor/Bar/1/state", Status: 200, Want: "1"},
		}},
		{"odd keys", []step{
			{Method: "PUT", Path: a + "/a%20b", Body: `1`, Status: 201},
			{Method: "PUT", Path: a + "/a%2Fb", Body: `2`, Status: 201},
			{Method: "PUT", Path: a + "/%2A/%3F", Body: `3`, Status: 201},
			{Method: "GET", Path: a + "/a%2Fb", Status: 200, Want: `2`},
			{Method: "GET", Path: a, Status: 200, Want: `{"a b":1,"a/b":2,"*":{"?":3}}`, WantJSON: true},
			{Method: "DELETE", Path: a, Status: 200, Want: "3"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { testenv.RunSteps(t, srv, tc.steps, testenv.UnorderedLists) })
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
	testenv.RunSteps(t, srv, []step{
		{Method: "PUT", Path: a + "/k", Body: big, Status: 413, WantContains: "larger than 64 bytes"},
		{Method: "PUT", Path: a + "/m/s", Body: big, Status: 413, WantContains: "larger than 64 bytes"},
		{Method: "POST", Path: a, Body: `{"updates":{"k":` + big + `}}`, Status: 413, WantContains: "larger than 64 bytes"},
		{Method: "PUT", Path: a + "/k", Body: `"small"`, Status: 201},
		{Method: "HEAD", Path: a + "/k", Status: 200},
	}, testenv.UnorderedLists)
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
		{Method: "GET", Path: a, Status: 503},
		{Method: "GET", Path: a + "/k", Status: 503},
		{Method: "GET", Path: a + "/k?nilOnAbsent=true", Status: 503},
		{Method: "HEAD", Path: a + "/k", Status: 503},
		{Method: "PUT", Path: a + "/k", Body: `1`, Status: 503},
		{Method: "PUT", Path: a + "/m/s", Body: `1`, Status: 503},
		{Method: "DELETE", Path: a + "/k", Status: 503},
		{Method: "DELETE", Path: a + "/m/s", Status: 503},
		{Method: "DELETE", Path: a, Status: 503},
		{Method: "POST", Path: a, Body: `{"updates":{"a":1}}`, Status: 503},
		{Method: "POST", Path: a + "/m", Body: `{"op":"get"}`, Status: 503},
	} {
		if s.Method != "HEAD" {
			s.WantContains = "unavailable"
		}
		testenv.RunSteps(t, srv, []step{s}, testenv.UnorderedLists)
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
	testenv.RunSteps(t, srv, []step{
		{Method: "POST", Path: a, Body: `{"updates":{"a":1,"b":2},"submapupdates":{"m":{"x":1},"n":{"y":2,"z":3}}}`, Status: 200, Want: `{"added":5,"removed":0}`},
		{Method: "PUT", Path: "/kar/v1/actor/Foo/other/state/k", Body: `1`, Status: 201},
	}, testenv.UnorderedLists)
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
