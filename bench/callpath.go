package main

// Where a sequential call's time goes (-callpath). The bench traces both
// sidecars with Go's execution tracer (their pprof's /debug/pprof/trace)
// while it makes sequential service calls, lines the two traces up on the
// machine's monotonic clock, finds the steps of each call in them by the
// functions on their stacks, and prints the median time from each step to
// the next. The broker, the component and the client are not traced: the
// time between a sidecar's write and the other sidecar's read is theirs and
// the kernel's.
//
// The steps are found by name (fastConn.serve, writer.send, Mesh.complete,
// ...): when those functions are renamed, the bench says it matched no
// call, and stepMarks must follow.

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/exp/trace"
)

// A call's steps, in the order they happen.
const (
	callerRead     = iota // the caller sidecar read the request
	callerProduced        // and wrote it to the broker
	serverFetched         // the server sidecar read the fetch response holding it
	serverHanded          // and handed it to a worker
	serverSent            // which wrote it to the component
	serverAnswered        // and read the component's answer
	serverProduced        // and wrote the response to the broker
	callerFetched         // the caller sidecar read the fetch response holding it
	callerHanded          // and handed it to the waiting call
	callerAnswered        // which wrote the answer to the client
	numSteps
)

var stepNames = [numSteps]string{
	"caller: request read → produced",
	"broker: produced → server's fetch response read",
	"server: fetch response read → handed to a worker",
	"server: handed → request written to the component",
	"component hop: written → answer read",
	"server: answer read → response produced",
	"broker: produced → caller's fetch response read",
	"caller: fetch response read → handed to the call",
	"caller: handed → answer written",
	"client hop: answer written → next request read",
}

// mark is one step seen in a trace, at a time of the monotonic clock.
type mark struct {
	at   int64
	step int
}

// stepMarks finds the steps of calls in one sidecar's trace.
func stepMarks(data []byte, caller bool) ([]mark, error) {
	r, err := trace.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	var marks []mark
	var toMono int64                   // monotonic clock minus trace clock
	lastRead := map[trace.GoID]int64{} // the start of each goroutine's last read
	for {
		ev, err := r.ReadEvent()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		switch ev.Kind() {
		case trace.EventSync:
			if s := ev.Sync(); s.ClockSnapshot != nil {
				toMono = int64(s.ClockSnapshot.Mono) - int64(s.ClockSnapshot.Trace)
			}
			continue
		case trace.EventStateTransition:
		default:
			continue
		}
		st := ev.StateTransition()
		if st.Resource.Kind != trace.ResourceGoroutine {
			continue
		}
		from, to := st.Goroutine()
		at := int64(ev.Time()) + toMono
		stack := frames(ev.Stack())
		has := func(fn string) bool { return strings.Contains(stack, fn) }
		switch {
		case from == trace.GoRunning && to == trace.GoSyscall:
			read := strings.HasPrefix(stack, "syscall.read ")
			if read {
				lastRead[ev.Goroutine()] = at
			}
			switch {
			case has("(*Broker).AsyncProduce"):
				marks = append(marks, mark{at, pick(caller, callerProduced, serverProduced)})
			case caller && has("(*fastConn).run"):
				marks = append(marks, mark{at, callerAnswered})
			case !caller && has("appclient.send"):
				marks = append(marks, mark{at, serverSent})
			case !caller && read && has("(*Client).exchange"):
				marks = append(marks, mark{at, serverAnswered})
			}
		case from == trace.GoWaiting && to == trace.GoRunnable:
			// A goroutine handing work on: the step is when it began
			// to read what it hands on.
			readAt, ok := lastRead[ev.Goroutine()]
			switch {
			case caller && ok && has("(*fastConn).serve"):
				marks = append(marks, mark{readAt, callerRead})
			case ok && has("(*responsePromise).handle"):
				marks = append(marks, mark{readAt, pick(caller, callerFetched, serverFetched)})
			case caller && has("(*Mesh).complete"):
				marks = append(marks, mark{at, callerHanded})
			case !caller && has("(*pool).Go"):
				marks = append(marks, mark{at, serverHanded})
			}
		}
	}
	return marks, nil
}

func pick(caller bool, ifCaller, ifServer int) int {
	if caller {
		return ifCaller
	}
	return ifServer
}

// frames is a stack's function names, innermost first, space-separated.
func frames(s trace.Stack) string {
	var b strings.Builder
	for f := range s.Frames() {
		b.WriteString(f.Func)
		b.WriteByte(' ')
	}
	return b.String()
}

// callSteps pairs up the marks of both sidecars into calls: each call is
// the steps in order, from a request read to the next one, none missing
// and none more than a second from the one before. It returns the
// durations of each step to the next, per call.
func callSteps(marks []mark) [][numSteps]time.Duration {
	slices.SortFunc(marks, func(a, b mark) int { return int(a.at - b.at) })
	var calls [][numSteps]time.Duration
	for i := range marks {
		if marks[i].step != callerRead {
			continue
		}
		var d [numSteps]time.Duration
		prev, want, ok := marks[i].at, 1, true
		for j := i + 1; j < len(marks) && want <= numSteps; j++ {
			m := marks[j]
			if m.at-prev > int64(time.Second) || m.step == callerRead && want < numSteps {
				ok = false
				break
			}
			if m.step == want%numSteps {
				d[want-1] = time.Duration(m.at - prev)
				prev = m.at
				want++
			}
		}
		if ok && want > numSteps {
			calls = append(calls, d)
		}
	}
	return calls
}

// callPath makes sequential calls to url while it traces both sidecars
// (pprof at callerPprof and serverPprof) for a second, and prints the
// median of each step of a call.
func (e *env) callPath(url, callerPprof, serverPprof string) error {
	// One call at a time for longer than the traces take.
	calling := make(chan struct{})
	go func() {
		defer close(calling)
		e.load(func(int) string { return url }, 1, 1500*time.Millisecond)
	}()
	defer func() { <-calling }()
	time.Sleep(200 * time.Millisecond) // into the rhythm of the calls
	traces := make([][]byte, 2)
	errs := make([]error, 2)
	var tw sync.WaitGroup
	for i, addr := range []string{callerPprof, serverPprof} {
		tw.Add(1)
		go func() {
			defer tw.Done()
			resp, err := http.Get("http://" + addr + "/debug/pprof/trace?seconds=1")
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			traces[i], errs[i] = io.ReadAll(resp.Body)
		}()
	}
	tw.Wait()
	var marks []mark
	for i, data := range traces {
		if errs[i] != nil {
			return fmt.Errorf("trace: %w", errs[i])
		}
		m, err := stepMarks(data, i == 0)
		if err != nil {
			return fmt.Errorf("trace: %w", err)
		}
		marks = append(marks, m...)
	}
	calls := callSteps(marks)
	if len(calls) == 0 {
		return fmt.Errorf("no call matched in the traces (%d steps seen): have the functions stepMarks looks for been renamed?", len(marks))
	}
	fmt.Printf("where a sequential service call's time goes (both sidecars traced, %d calls; medians, traced, so slower than untraced):\n", len(calls))
	var total []time.Duration
	for _, c := range calls {
		var t time.Duration
		for _, d := range c {
			t += d
		}
		total = append(total, t)
	}
	for s := range numSteps {
		ds := make([]time.Duration, len(calls))
		for i, c := range calls {
			ds[i] = c[s]
		}
		fmt.Printf("  %-52s %s\n", stepNames[s], ms(median(ds)))
	}
	fmt.Printf("  %-52s %s\n", "a call, end to end", ms(median(total)))
	return nil
}
