package autoscale

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// script is a Reader that plays loads in turn and then ends the loop.
type script struct {
	mu     sync.Mutex
	loads  []Input
	errs   map[int]error
	cancel context.CancelFunc
	reads  int
}

func (s *script) Read(ctx context.Context, t Target) (Input, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.reads
	s.reads++
	if i >= len(s.loads)-1 {
		s.cancel()
	}
	if err := s.errs[i]; err != nil {
		return Input{}, err
	}
	return s.loads[min(i, len(s.loads)-1)], nil
}

// TestLoop: the loop sets the replicas only when they change, from what
// the target runs at the start, and goes on after failed reads and sets.
func TestLoop(t *testing.T) {
	cases := []struct {
		name    string
		current int
		loads   []Input
		errs    map[int]error
		setErrs map[int]error // by call
		want    []int
	}{
		{"from zero on held requests, up with the load", 0,
			[]Input{{}, {Held: 1}, {Members: 1, InFlight: 1}, {Members: 1, InFlight: 25}}, nil, nil, []int{1, 3}},
		{"nothing to do when the target already runs what is wanted", 1,
			[]Input{{Members: 1, InFlight: 1}, {Members: 1, InFlight: 2}}, nil, nil, nil},
		{"a failed read is skipped", 0,
			[]Input{{Held: 1}, {Held: 1}}, map[int]error{0: errors.New("redis away")}, nil, []int{1}},
		{"a failed set is tried again", 0,
			[]Input{{Held: 1}, {Held: 1}, {Held: 1}}, nil, map[int]error{0: errors.New("platform away")}, []int{1, 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			r := &script{loads: c.loads, errs: c.errs, cancel: cancel}
			s, err := NewScaler(Policy{TargetInFlight: 10, Max: 5, ScaleDownWindow: time.Minute, Cooldown: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			set := func(ctx context.Context, n int, in Input) error {
				got = append(got, n)
				return c.setErrs[len(got)-1]
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			if err := Loop(ctx, r, Target{"a", "service", "s"}, s, time.Millisecond, c.current, set, log); !errors.Is(err, context.Canceled) {
				t.Fatalf("Loop: %v", err)
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("set %v, want %v", got, c.want)
			}
		})
	}
}

// waking is a Reader whose load the test sets, and a Waker.
type waking struct {
	mu    sync.Mutex
	in    Input
	wake  chan struct{}
	reads chan Input
}

func (w *waking) Read(ctx context.Context, t Target) (Input, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads <- w.in
	return w.in, nil
}

func (w *waking) Wake(ctx context.Context, app string) (<-chan struct{}, error) { return w.wake, nil }

// TestLoopWakes: a Waker's wake makes the loop read and scale at once,
// not at its next poll (an hour here).
func TestLoopWakes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	w := &waking{wake: make(chan struct{}, 1), reads: make(chan Input, 10)}
	s, err := NewScaler(Policy{TargetInFlight: 10, Max: 5, ScaleDownWindow: time.Minute, Cooldown: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	set := make(chan int, 10)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go Loop(ctx, w, Target{"a", "service", "s"}, s, time.Hour, 0, func(ctx context.Context, n int, in Input) error {
		set <- n
		return nil
	}, log)
	<-w.reads // the first poll: nothing to do
	w.mu.Lock()
	w.in = Input{Held: 1}
	w.mu.Unlock()
	w.wake <- struct{}{}
	select {
	case n := <-set:
		if n != 1 {
			t.Errorf("woken with a held request: set %d, want 1", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a wake did not make the loop read and scale")
	}
}
