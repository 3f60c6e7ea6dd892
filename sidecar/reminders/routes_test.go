package reminders

import (
	"github.com/kar-runtime/kar/internal/testenv"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

type step = testenv.Step

func serve(t *testing.T, s *Store) *httptest.Server {
	mux := http.NewServeMux()
	Register(mux, s)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
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
			{Method: "GET", Path: base, Status: 200, Want: `[]`},
			{Method: "GET", Path: base + "/ticker", Status: 404, Want: "Not Found\n"},
			{Method: "GET", Path: base + "/ticker?nilOnAbsent=true", Status: 200, Want: "null"},
			{Method: "DELETE", Path: base + "/ticker", Status: 404, Want: "Not Found\n"},
			{Method: "DELETE", Path: base + "/ticker?nilOnAbsent=true", Status: 200, Want: "0"},
			// what kar-sdk's actorScheduleReminder sends
			{Method: "PUT", Path: base + "/ticker", Body: `{"path":"/echo","targetTime":"2120-04-14T14:17:51.073Z","period":"5s","data":[{"msg":"hello"}]}`, Status: 201},
			{Method: "PUT", Path: base + "/once", Body: `{"path":"/echo","targetTime":"2120-04-14T14:20:00Z","data":{"msg": "carpe diem"}}`, Status: 201},
			{Method: "GET", Path: base + "/ticker", Status: 200, WantJSON: true,
				Want: `{"Actor":{"Type":"Foo","ID":"22"},"id":"ticker","path":"/echo","targetTime":"2120-04-14T14:17:51.073Z","period":5000000000,"encodedData":"[{\"msg\":\"hello\"}]"}`},
			{Method: "GET", Path: base, Status: 200, WantJSON: true, Want: `[
				{"Actor":{"Type":"Foo","ID":"22"},"id":"once","path":"/echo","targetTime":"2120-04-14T14:20:00Z","encodedData":"{\"msg\":\"carpe diem\"}"},
				{"Actor":{"Type":"Foo","ID":"22"},"id":"ticker","path":"/echo","targetTime":"2120-04-14T14:17:51.073Z","period":5000000000,"encodedData":"[{\"msg\":\"hello\"}]"}]`},
			// replace: 204, new schedule and no data
			{Method: "PUT", Path: base + "/ticker", Body: `{"path":"/tock","targetTime":"2120-01-01T00:00:00+02:00"}`, Status: 204},
			{Method: "GET", Path: base + "/ticker", Status: 200, WantJSON: true,
				Want: `{"Actor":{"Type":"Foo","ID":"22"},"id":"ticker","path":"/tock","targetTime":"2119-12-31T22:00:00Z"}`},
			{Method: "GET", Path: "/kar/v1/actor/Foo/2/reminders", Status: 200, Want: `[]`}, // another instance
			{Method: "DELETE", Path: base + "/once", Status: 200, Want: "1"},
			{Method: "GET", Path: base + "/once?nilOnAbsent=true", Status: 200, Want: "null"},
			{Method: "PUT", Path: base + "/a", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, Status: 201},
			{Method: "PUT", Path: "/kar/v1/actor/Foo/2/reminders/a", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, Status: 201},
			{Method: "DELETE", Path: base, Status: 200, Want: "2"},
			{Method: "DELETE", Path: base, Status: 200, Want: "0"},
			{Method: "GET", Path: "/kar/v1/actor/Foo/2/reminders/a", Status: 200, WantContains: `"id":"a"`},
			{Method: "DELETE", Path: "/kar/v1/actor/Foo/2/reminders", Status: 200, Want: "1"},
		}},
		{"bad input", []step{
			{Method: "PUT", Path: base + "/r", Body: ``, Status: 400, WantContains: "request body is empty"},
			{Method: "PUT", Path: base + "/r", Body: `{"path":`, Status: 400, WantContains: "not a reminder"},
			{Method: "PUT", Path: base + "/r", Body: `{"targetTime":"2120-01-01T00:00:00Z"}`, Status: 400, WantContains: `"path" is missing`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x"}`, Status: 400, WantContains: `"targetTime" is missing`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":null}`, Status: 400, WantContains: `"targetTime" is missing`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"tomorrow"}`, Status: 400, WantContains: `"targetTime" "tomorrow" is not an ISO-8601`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00"}`, Status: 400, WantContains: `with a time zone`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":1700000000}`, Status: 400, WantContains: `"targetTime" must be an ISO-8601 string`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":"often"}`, Status: 400, WantContains: `"period" "often" is not a Go duration`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":5000}`, Status: 400, WantContains: `"period" must be a Go duration string`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":"-5s"}`, Status: 400, WantContains: `negative`},
			{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","period":"1us"}`, Status: 400, WantContains: `shorter than the minimum`},
			{Method: "GET", Path: base + "/r?nilOnAbsent=perhaps", Status: 400, WantContains: "nilOnAbsent"},
			{Method: "POST", Path: base + "/r", Body: `{}`, Status: 405, Want: "Method Not Allowed\n"},
			{Method: "GET", Path: base, Status: 200, Want: `[]`}, // nothing was stored
		}},
		{"odd ids", []step{
			{Method: "PUT", Path: "/kar/v1/actor/F%2Fo/2/reminders/%2A", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, Status: 201},
			{Method: "PUT", Path: "/kar/v1/actor/F/o%2F2/reminders/%2A", Body: `{"path":"/y","targetTime":"2120-01-01T00:00:00Z"}`, Status: 201},
			{Method: "GET", Path: "/kar/v1/actor/F%2Fo/2/reminders", Status: 200, WantContains: `"path":"/x"`},
			{Method: "GET", Path: "/kar/v1/actor/F/o%2F2/reminders/%2A", Status: 200, WantContains: `"path":"/y"`},
			{Method: "DELETE", Path: "/kar/v1/actor/F%2Fo/2/reminders", Status: 200, Want: "1"},
			{Method: "DELETE", Path: "/kar/v1/actor/F/o%2F2/reminders", Status: 200, Want: "1"},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { testenv.RunSteps(t, srv, tc.steps) })
	}
}

func TestReminderBodyLimit(t *testing.T) {
	s, _ := newStore(t, backend(t).RedisAddr(), Options{MaxBodyBytes: 100})
	srv := serve(t, s)
	testenv.RunSteps(t, srv, []step{
		{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z","data":"` + strings.Repeat("x", 100) + `"}`, Status: 413, WantContains: "larger than 100 bytes"},
		{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`, Status: 201},
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
		{Method: "GET", Path: base},
		{Method: "DELETE", Path: base},
		{Method: "GET", Path: base + "/r"},
		{Method: "GET", Path: base + "/r?nilOnAbsent=true"},
		{Method: "DELETE", Path: base + "/r"},
		{Method: "PUT", Path: base + "/r", Body: `{"path":"/x","targetTime":"2120-01-01T00:00:00Z"}`},
	} {
		s.Status, s.WantContains = 503, "unavailable"
		testenv.RunSteps(t, srv, []step{s})
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
		{body: `{"path":"/../../admin","targetTime":"2030-01-02T03:04:05Z"}`, err: "one path segment"},
		{body: `{"path":"/..","targetTime":"2030-01-02T03:04:05Z"}`, err: "dot segment"},
		{body: `{"path":"/m\u0000","targetTime":"2030-01-02T03:04:05Z"}`, err: "control character"},
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
