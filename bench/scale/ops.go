package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// OpsPoint is what one kind of call costs the backends, per call: the
// Redis commands (scripts' own commands included) and the broker requests
// of both sidecars, less what the mesh does at idle meanwhile.
type OpsPoint struct {
	What     string
	Calls    int
	InFlight int
	Elapsed  time.Duration
	Ops      Delta
	RedisCPU time.Duration // redis-server's CPU per call
}

// Ops measures the backend operations per call of each kind of call:
// service calls, actor calls (warm instance) without and with a state
// write, one at a time and with inflight in flight.
func Ops(ctx context.Context, e *Env, calls, inflight int, idleWindow time.Duration) ([]OpsPoint, error) {
	defer e.StopAll()
	caller, err := e.StartSidecar(nil, false)
	if err != nil {
		return nil, err
	}
	if _, err := e.StartSidecar([]string{"-service", "echo", "-actors", "B"}, true); err != nil {
		return nil, err
	}
	svc := caller.URL() + "/kar/v1/service/echo/call/echo"
	actor := func(method string) func(i int) string {
		return func(i int) string {
			return caller.URL() + "/kar/v1/actor/B/" + strconv.Itoa(i%inflight) + "/call/" + method
		}
	}
	if err := waitCall(e, svc, `{}`, 60*time.Second); err != nil {
		return nil, err
	}
	// Warm every instance used, so that the figures are of warm calls.
	if _, err := Parallel(inflight, inflight, func(i int) error { return callActor(e, actor("touch")(i)) }); err != nil {
		return nil, err
	}
	// The idle rate, subtracted from each figure.
	i0, err := e.Snap(ctx)
	if err != nil {
		return nil, err
	}
	time.Sleep(idleWindow)
	i1, err := e.Snap(ctx)
	if err != nil {
		return nil, err
	}
	idle := i1.Sub(i0)

	kinds := []struct {
		what string
		url  func(int) string
		body string
		ct   string
	}{
		{"service call", func(int) string { return svc }, `{"x":1}`, "application/json"},
		{"actor call, no state", actor("touch"), `[]`, "application/kar+json"},
		{"actor call writing one state key", actor("set"), `[]`, "application/kar+json"},
	}
	var out []OpsPoint
	for _, k := range kinds {
		for _, fl := range []int{1, inflight} {
			s0, err := e.Snap(ctx)
			if err != nil {
				return out, err
			}
			start := time.Now()
			failed, ferr := Parallel(calls, fl, func(i int) error {
				_, err := e.Do(http.MethodPost, k.url(i), k.ct, k.body)
				return err
			})
			elapsed := time.Since(start)
			if failed > 0 {
				return out, fmt.Errorf("%s: %d of %d calls failed: %w", k.what, failed, calls, ferr)
			}
			s1, err := e.Snap(ctx)
			if err != nil {
				return out, err
			}
			d := lessIdle(s1.Sub(s0), idle)
			out = append(out, OpsPoint{What: k.what, Calls: calls, InFlight: fl, Elapsed: elapsed, Ops: d, RedisCPU: perCall(d.RedisCPU, calls)})
		}
	}
	return out, nil
}

// lessIdle removes from d what the idle mesh does in as long.
func lessIdle(d, idle Delta) Delta {
	f := d.Seconds / idle.Seconds
	sub := func(m, im map[string]int64) {
		for k, v := range im {
			m[k] -= int64(float64(v) * f)
			if m[k] <= 0 {
				delete(m, k)
			}
		}
	}
	sub(d.RedisCmds, idle.RedisCmds)
	sub(d.KafkaReqs, idle.KafkaReqs)
	d.RedisCPU -= idle.RedisCPU * f
	return d
}

// Print writes one figure.
func (p OpsPoint) Print(w io.Writer) {
	n := float64(p.Calls)
	fmt.Fprintf(w, "  %s, %d in flight (%.0f calls/s): Redis %.2f commands (%s), redis-server CPU %s; Kafka %.2f requests (%s)\n",
		p.What, p.InFlight, n/p.Elapsed.Seconds(), float64(p.Ops.RedisTotal())/n, Per(p.Ops.RedisCmds, n), us(p.RedisCPU),
		float64(p.Ops.KafkaTotal())/n, Per(p.Ops.KafkaReqs, n))
}
