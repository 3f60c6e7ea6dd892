package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/config"
)

const testApp = "evapp"

// world is one backend (real redis-server and Kafka-protocol broker) and
// the clients of the services under test.
type world struct {
	b   *devenv.Backend
	cfg config.Backend
	rdb redis.UniversalClient
	kc  *kafka.Client
}

func newWorld(t testing.TB, opts ...testenv.Option) *world {
	t.Helper()
	b := testenv.Backend(t, opts...)
	cfg := config.Backend{
		KafkaBrokers: strings.Split(b.KafkaBrokers(), ","), KafkaVersion: "2.8.0",
		RedisHost: b.RedisHost(), RedisPort: b.RedisPort(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rdb, err := store.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	kc, err := kafka.Connect(ctx, cfg, testApp)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kc.Close() })
	return &world{b: b, cfg: cfg, rdb: rdb, kc: kc}
}

// logBuffer collects log output safely from many goroutines.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// service makes a Service of testApp on w with quick test timings.
func (w *world) service(t testing.TB, sidecarID string, deliver DeliverFunc, adjust ...func(*Options)) (*Service, *logBuffer) {
	logs := &logBuffer{}
	o := Options{
		App: testApp, Redis: w.rdb, Kafka: w.kc, Keys: store.NewKeys(testApp), Deliver: deliver,
		SidecarID: sidecarID, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		LeaseTTL: 1500 * time.Millisecond, Poll: 100 * time.Millisecond,
		RetryMin: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond,
	}
	for _, f := range adjust {
		f(&o)
	}
	return New(o), logs
}

// serve mounts s's routes on a test server.
func serve(t testing.TB, s *Service) *httptest.Server {
	mux := http.NewServeMux()
	s.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// run runs s.Run until stop (or the end of the test) and checks that it
// returns promptly.
func run(t testing.TB, s *Service) (stop func()) {
	return testenv.RunUntilStopped(t, 15*time.Second, s.Run)
}

// delivery is one call of a DeliverFunc.
type delivery struct {
	actorType, actorID, path, contentType string
	body                                  string
	by                                    string
}

// recorder is a DeliverFunc that records its calls, checks that calls
// never overlap, and can be slowed down or made to fail.
type recorder struct {
	mu        sync.Mutex
	calls     []delivery
	active    int
	overlaps  int
	failFirst int // this many calls fail
	delay     func() time.Duration
}

func (rec *recorder) deliverAs(by string) DeliverFunc {
	return func(ctx context.Context, actorType, actorID, path, contentType string, body []byte) error {
		rec.mu.Lock()
		rec.active++
		if rec.active > 1 {
			rec.overlaps++
		}
		d := time.Duration(0)
		if rec.delay != nil {
			d = rec.delay()
		}
		rec.mu.Unlock()
		defer func() {
			rec.mu.Lock()
			rec.active--
			rec.mu.Unlock()
		}()
		if d > 0 {
			select {
			case <-time.After(d):
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.failFirst > 0 {
			rec.failFirst--
			return errors.New("actor unavailable (test)")
		}
		rec.calls = append(rec.calls, delivery{actorType, actorID, path, contentType, string(body), by})
		return nil
	}
}

func (rec *recorder) snapshot() []delivery {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]delivery(nil), rec.calls...)
}

func (rec *recorder) count() int {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return len(rec.calls)
}

// do sends one request and returns the status and body.
func do(t testing.TB, method, url, contentType, body string, header ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// expect checks a request's status and, when want is not "*", its body.
func expect(t testing.TB, method, url, contentType, body string, wantStatus int, wantBody string) string {
	t.Helper()
	st, got := do(t, method, url, contentType, body)
	if st != wantStatus || (wantBody != "*" && strings.TrimSpace(got) != wantBody) {
		t.Fatalf("%s %s: got %d %q, want %d %q", method, url, st, got, wantStatus, wantBody)
	}
	return got
}

// subscribe subscribes actor Sub/<id> to topic through the API.
func subscribe(t testing.TB, base, actorID, subID, body string) {
	t.Helper()
	st, got := do(t, "PUT", base+"/kar/v1/actor/Sub/"+actorID+"/events/"+subID, "application/json", body)
	if st != http.StatusNoContent && st != http.StatusOK {
		t.Fatalf("subscribe: %d %s", st, got)
	}
}

// publishN publishes {"n": i} for i in [from, to) to topic.
func publishN(t testing.TB, base, topic string, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		expect(t, "POST", base+"/kar/v1/event/"+topic+"/publish", "application/json", fmt.Sprintf(`{"n":%d}`, i), 200, "OK")
	}
}

// numbers decodes the n of each delivered [{"n": i}] (data delivery).
func numbers(t testing.TB, ds []delivery) []int {
	t.Helper()
	out := make([]int, 0, len(ds))
	for _, d := range ds {
		var args []struct {
			N    *int `json:"n"`
			Data *struct {
				N int `json:"n"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(d.body), &args); err != nil || len(args) != 1 {
			t.Fatalf("delivered body %q is not [event]: %v", d.body, err)
		}
		switch {
		case args[0].N != nil:
			out = append(out, *args[0].N)
		case args[0].Data != nil:
			out = append(out, args[0].Data.N)
		default:
			t.Fatalf("delivered body %q holds no n", d.body)
		}
	}
	return out
}
