package reminders

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/devenv"
	"github.com/kar-runtime/kar/internal/testenv"
)

var testKeys = store.NewKeys("app")

// backend serves a private redis-server for the test.
func backend(t testing.TB, opts ...testenv.Option) *devenv.Backend {
	t.Helper()
	return testenv.Backend(t, opts...)
}

func newClient(t testing.TB, addr string) redis.UniversalClient {
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { c.Close() })
	return c
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

func newStore(t testing.TB, addr string, opts Options) (*Store, *logBuffer) {
	logs := &logBuffer{}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return New(newClient(t, addr), testKeys, opts), logs
}

// firing is one call of the fire function.
type firing struct {
	r  Reminder
	at time.Time
}

// recorder is a FireFunc that records its calls and can be made to fail.
type recorder struct {
	mu      sync.Mutex
	calls   []firing
	failFor map[string]int // reminder id → how many more calls fail
}

func (rec *recorder) fire(_ context.Context, r Reminder) error {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.calls = append(rec.calls, firing{r: r, at: time.Now()})
	if rec.failFor[r.ID] > 0 {
		rec.failFor[r.ID]--
		return errFire
	}
	return nil
}

func (rec *recorder) snapshot() []firing {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return append([]firing(nil), rec.calls...)
}

func (rec *recorder) count(id string) int {
	n := 0
	for _, f := range rec.snapshot() {
		if f.r.ID == id {
			n++
		}
	}
	return n
}

var errFire = errors.New("actor call not accepted (test)")

// runScheduler runs s.Run until the test ends (or stop is called) and
// checks that it returns promptly.
func runScheduler(t testing.TB, s *Store, fire FireFunc) (stop func()) {
	return testenv.RunUntilStopped(t, 10*time.Second, func(ctx context.Context) error { return s.Run(ctx, fire) })
}

func schedule(t testing.TB, s *Store, r Reminder) {
	t.Helper()
	if _, err := s.Schedule(context.Background(), r); err != nil {
		t.Fatal(err)
	}
}

// gone reports whether no trace of the reminder is left in Redis.
func gone(t testing.TB, s *Store, r Reminder) bool {
	ctx := context.Background()
	inHash, err := s.rdb.HExists(ctx, testKeys.Reminders(r.Actor.Type, r.Actor.ID), r.field()).Result()
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.rdb.ZScore(ctx, testKeys.ReminderSchedule(), r.field()).Result()
	return !inHash && err == redis.Nil
}
