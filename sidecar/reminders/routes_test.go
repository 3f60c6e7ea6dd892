package reminders

import (
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
)

type step struct {
	method, path, body string
	status             int
	want               string // exact body, or JSON compared structurally when wantJSON
	wantJSON           bool
	wantContains       string
}

func serve(t *testing.T, s *Store) *httptest.Server {
	mux := http.NewServeMux()
	Register(mux, s)
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
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("%s: body %s, want %s", name, got, s.want)
			}
		default:
			if string(got) != s.want {
				t.Fatalf("%s: body %q, want %q", name, got, s.want)
			}
		}
	}
}

const base = "/kar/v1/actor/Foo/22/reminders"

func TestReminderRoutes(t *testing.T) {
	b := backend(t)
	s, _ := newStore(t, b.RedisAddr(), Options{})
	srv := serve(t, s) // no scheduler runs: nothing fires during this test

	tests := []struct {
		name  string
		steps []step
	}{
		{"crud", []step{
			{method: "GET", path: base, status: 200, want: `[]`},
			{method: "GET", path: base + "/ticker", status: 404, want: "Not Found\n"},
			{method: "GET", path: base + "/ticker?nilOnAbsent=true", status: 200, want: "null"},
			{method: "DELETE", path: base + "/ticker", status: 404, want: "Not Found\n"},
			{method: "DELETE", path: base + "/ticker?nilOnAbsent=true", status: 200, want: "0"},
			// what kar-sdk's actorScheduleReminder sends
			{method: "PUT", path: base + "/ticker", body: `{"path":"/echo","targetTime":"2120-04-14T14:17:51.073Z","period":"5s","data":[{"msg":"hello"}]}`, status: 201},
			{method: "PUT", path: base + "/once", body: `{"path":"/echo","targetTime":"2120-04-14T14:20:00Z","data":{"msg": "carpe diem"}}`, status: 201},
			{method: "GET", path: base + "/ticker", status: 200, wantJSON: true,
				want: `{"Actor":{"Type":"Foo","ID":"22"},"id":"ticker","path":"/echo","targetTime":"2120-04-14T14:17:51.073Z","period":5000000000,"encodedData":"[{\"msg\":\"hello\"}]"}`},
			{method: "GET", path: base, status: 200, wantJSON: true, want: `[
				{"Actor":{"Type":"Foo","ID":"22"},"id":"once","path":"/echo","targetTime":"2120-04-14T14:20:00Z","encodedData":"{\"msg\":\"carpe diem\"}"},
				{"Actor":{"Type":"Foo","ID":"22"},"id":"ticker","path":"/echo","targetTime":"2120-04-14T14:17:51.073Z","period":5000000000,"encodedData":"[{\"msg\":\"hello\"}]"}]`},
			// replace: 204, new schedule and no data
			{method: "PUT", path: base + "/ticker", body: `{"path":"/tock","targetTime":"2120-01-01T00:00:00+02:00"}`, status: 204},
			{method: "GET", path: base + "/ticker", status: 200, wantJSON: true,
				want: `{"Actor":{"Type":"Foo","ID":"22"},"id":"ticker","path":"/tock","targetTime":"2119-12-31T22:00:00Z"}`},
			{method: "GET", path: "/kar/v1/actor/Foo/2/reminders", status: 200, want: `[]`}, // another instance
			{method: "DELETE", path: base + "/once", status: 200, want: "1"},
			{method: "GET", path: base + "/once?nilOnAbsent=true", status: 200, want: "null"},
			{method: "PUT", path: base + "/a", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, status: 201},
			{method: "PUT", path: "/kar/v1/actor/Foo/2/reminders/a", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, status: 201},
			{method: "DELETE", path: base, status: 200, want: "2"},
			{method: "DELETE", path: base, status: 200, want: "0"},
			{method: "GET", path: "/kar/v1/actor/Foo/2/reminders/a", status: 200, wantContains: `"id":"a"`},
			{method: "DELETE", path: "/kar/v1/actor/Foo/2/reminders", status: 200, want: "1"},
		}},
		{"bad input", []step{
			{method: "PUT", path: base + "/r", body: ``, status: 400, wantContains: "request body is empty"},
			{method: "PUT", path: base + "/r", body: `{"path":`, status: 400, wantContains: "not a reminder"},
			{method: "PUT", path: base + "/r", body: `{"targetTime":"2120-01-01T00:00:00Z"}`, status: 400, wantContains: `"path" is missing`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x"}`, status: 400, wantContains: `"targetTime" is missing`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":null}`, status: 400, wantContains: `"targetTime" is missing`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"tomorrow"}`, status: 400, wantContains: `"targetTime" "tomorrow" is not an ISO-8601`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00"}`, status: 400, wantContains: `with a time zone`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":1700000000}`, status: 400, wantContains: `"targetTime" must be an ISO-8601 string`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":"often"}`, status: 400, wantContains: `"period" "often" is not a Go duration`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":5000}`, status: 400, wantContains: `"period" must be a Go duration string`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":"-5s"}`, status: 400, wantContains: `negative`},
			{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":"1us"}`, status: 400, wantContains: `shorter than the minimum`},
			{method: "GET", path: base + "/r?nilOnAbsent=perhaps", status: 400, wantContains: "nilOnAbsent"},
			{method: "POST", path: base + "/r", body: `{}`, status: 405, want: "Method Not Allowed\n"},
			{method: "GET", path: base, status: 200, want: `[]`}, // nothing was stored
		}},
		{"odd ids", []step{
			{method: "PUT", path: "/kar/v1/actor/F%2Fo/2/reminders/%2A", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, status: 201},
			{method: "PUT", path: "/kar/v1/actor/F/o%2F2/reminders/%2A", body: `{"path":"/y","targetTime":"2120-01-01T00:00:00Z"}`, status: 201},
			{method: "GET", path: "/kar/v1/actor/F%2Fo/2/reminders", status: 200, wantContains: `"path":"/x"`},
			{method: "GET", path: "/kar/v1/actor/F/o%2F2/reminders/%2A", status: 200, wantContains: `"path":"/y"`},
			{method: "DELETE", path: "/kar/v1/actor/F%2Fo/2/reminders", status: 200, want: "1"},
			{method: "DELETE", path: "/kar/v1/actor/F/o%2F2/reminders", status: 200, want: "1"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { run(t, srv, tc.steps) })
	}
}

func TestReminderBodyLimit(t *testing.T) {
	s, _ := newStore(t, backend(t).RedisAddr(), Options{MaxBodyBytes: 100})
	srv := serve(t, s)
	run(t, srv, []step{
		{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","data":"` + strings.Repeat("x", 100) + `"}`, status: 413, wantContains: "larger than 100 bytes"},
		{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, status: 201},
	})
}

func TestReminderRedisDown(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rdb := redis.NewClient(&redis.Options{Addr: addr, Password: "s3cret-pw", MaxRetries: -1, DialTimeout: 200 * time.Millisecond, DialerRetries: 1})
	t.Cleanup(func() { rdb.Close() })
	srv := serve(t, New(rdb, testKeys, Options{}))
	for _, s := range []step{
		{method: "GET", path: base},
		{method: "DELETE", path: base},
		{method: "GET", path: base + "/r"},
		{method: "GET", path: base + "/r?nilOnAbsent=true"},
		{method: "DELETE", path: base + "/r"},
		{method: "PUT", path: base + "/r", body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`},
	} {
		s.status, s.wantContains = 503, "unavailable"
		run(t, srv, []step{s})
	}
	res, err := srv.Client().Get(srv.URL + base)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if strings.Contains(string(body), "s3cret-pw") {
		t.Fatalf("answer leaks the password: %q", body)
	}
}

func TestParseSchedule(t *testing.T) {
	foo := Actor{Type: "Foo", ID: "1"}
	at := time.Date(2030, 1, 2, 3, 4, 5, 6000000, time.UTC)
	tests := []struct {
		body string
		want Reminder
		err  string
	}{
		{body: `{"path":"/m","targetTime":"2030-01-02T03:04:05.006Z"}`, want: Reminder{Actor: foo, ID: "r", Path: "/m", TargetTime: at}},
		{body: `{"path":"/m","targetTime":"2030-01-02T05:04:05.006+0200","period":"1m30s","data":[1, 2]}`,
			want: Reminder{Actor: foo, ID: "r", Path: "/m", TargetTime: at, Period: 90 * time.Second, EncodedData: "[1,2]"}},
		{body: `{"path":"/m","targetTime":"2030-01-02T03:04:05.006Z","period":"","data":null}`, want: Reminder{Actor: foo, ID: "r", Path: "/m", TargetTime: at}},
		{body: `{"path":"/m","targetTime":"2030-01-02T03:04:05.006Z","period":"0s"}`, want: Reminder{Actor: foo, ID: "r", Path: "/m", TargetTime: at}},
		{body: `{"path":"/m","targetTime":"2030-01-02T03:04:05.006Z","data":"text"}`, want: Reminder{Actor: foo, ID: "r", Path: "/m", TargetTime: at, EncodedData: `"text"`}},
		{body: `[]`, err: "not a reminder"},
		{body: `{"path":"/m","targetTime":"2030-13-02T03:04:05Z"}`, err: "not an ISO-8601"},
		{body: `{"path":"/m","targetTime":"2030-01-02T03:04:05Z","period":"10"}`, err: "not a Go duration"},
	}
	for _, tc := range tests {
		got, err := ParseSchedule(foo, "r", []byte(tc.body))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want one containing %q", tc.body, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.body, err)
			continue
		}
		if !got.TargetTime.Equal(tc.want.TargetTime) || got.TargetTime.Location() != time.UTC {
			t.Errorf("%s: target %v, want %v in UTC", tc.body, got.TargetTime, tc.want.TargetTime)
		}
		got.TargetTime = tc.want.TargetTime
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.body, got, tc.want)
		}
	}
}

func TestNextTarget(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		now         time.Duration // after t0
		period      time.Duration
		want        time.Duration // after t0
		wantSkipped int64
	}{
		{now: 1 * time.Millisecond, period: time.Second, want: time.Second},
		{now: 999 * time.Millisecond, period: time.Second, want: time.Second},
		{now: time.Second, period: time.Second, want: 2 * time.Second, wantSkipped: 1},
		{now: 3500 * time.Millisecond, period: time.Second, want: 4 * time.Second, wantSkipped: 3},
		{now: 0, period: time.Millisecond, want: time.Millisecond},
	}
	for _, tc := range tests {
		next, skipped := nextTarget(t0, tc.period, t0.Add(tc.now))
		if !next.Equal(t0.Add(tc.want)) || skipped != tc.wantSkipped {
			t.Errorf("now +%v period %v: next +%v skipped %d, want +%v skipped %d",
				tc.now, tc.period, next.Sub(t0), skipped, tc.want, tc.wantSkipped)
		}
	}
}

func TestScoreNeverEarly(t *testing.T) {
	for _, ns := range []int64{0, 1, 999_999, 1_000_000, 1_000_001, 1_700_000_000_123_456_789} {
		tm := time.Unix(0, ns)
		ms := score(tm)
		if time.UnixMilli(ms).Before(tm) || time.UnixMilli(ms).Sub(tm) >= time.Millisecond {
			t.Errorf("score(%d ns) = %d ms", ns, ms)
		}
	}
}
