package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// SubsOptions configure the reminders and subscriptions benchmark.
type SubsOptions struct {
	Reminders, Subscriptions int
	Hosts                    int // sidecars hosting the actor type
	InFlight                 int // requests in flight while creating
	Idle                     time.Duration
	Spread                   time.Duration // reminders' targets are spread over this
}

// IdleCost is what a mesh costs with nothing to do.
type IdleCost struct {
	Ops Delta
	CPU float64 // cores: sidecars and components
}

func (c IdleCost) String() string {
	return fmt.Sprintf("Redis %.0f commands/s, Kafka %.0f requests/s, sidecars+components %.3f cores, redis-server %.3f cores",
		float64(c.Ops.RedisTotal())/c.Ops.Seconds, float64(c.Ops.KafkaTotal())/c.Ops.Seconds, c.CPU, c.Ops.RedisCPU/c.Ops.Seconds)
}

// SubsPoint is the figures of n reminders or n subscriptions.
type SubsPoint struct {
	What                      string // "reminders" or "subscriptions"
	N                         int
	Create                    time.Duration
	RedisPer                  float64 // bytes per reminder or subscription
	SidecarRSSPer             float64 // bytes, every sidecar's RSS growth together
	Before, After             IdleCost
	KafkaConns                int // per sidecar (median), after
	LateP50, LateP99, LateMax time.Duration
	Fired                     int
	DuePerSecond              float64
	FirstDelivery, FanOut     time.Duration // subscriptions: all running; one more event to all
}

// Subs measures o.Reminders reminders, then o.Subscriptions subscriptions,
// each on fresh sidecars and an empty Redis.
func Subs(ctx context.Context, e *Env, o SubsOptions) ([]SubsPoint, error) {
	var out []SubsPoint
	if o.Reminders > 0 {
		pt, err := remindersRun(ctx, e, o)
		if err != nil {
			return out, err
		}
		out = append(out, pt)
	}
	if o.Subscriptions > 0 {
		pt, err := subscriptionsRun(ctx, e, o)
		if err != nil {
			return out, err
		}
		out = append(out, pt)
	}
	return out, nil
}

// actorMesh starts a caller sidecar and hosts of actor type typ, waits
// until an instance answers, and returns them (caller first).
func actorMesh(ctx context.Context, e *Env, typ string, hosts int) (*Proc, []*Proc, error) {
	if err := e.rdb.FlushAll(ctx).Err(); err != nil {
		return nil, nil, err
	}
	caller, err := e.StartSidecar(nil, false)
	if err != nil {
		return nil, nil, err
	}
	var hs []*Proc
	for i := 0; i < hosts; i++ {
		h, err := e.StartSidecar([]string{"-actors", typ}, true)
		if err != nil {
			return nil, nil, err
		}
		hs = append(hs, h)
	}
	if err := waitCall(e, caller.URL()+"/kar/v1/actor/"+typ+"/warm/call/touch", `[]`, 60*time.Second); err != nil {
		return nil, nil, err
	}
	for _, h := range hs {
		if err := e.WaitHealthy(ctx, h, 60*time.Second); err != nil {
			return nil, nil, err
		}
	}
	time.Sleep(time.Second)
	return caller, hs, nil
}

func idle(ctx context.Context, e *Env, procs []*Proc, window time.Duration) (IdleCost, error) {
	cpu0 := sumTreeCPU(procs)
	s0, err := e.Snap(ctx)
	if err != nil {
		return IdleCost{}, err
	}
	time.Sleep(window)
	s1, err := e.Snap(ctx)
	if err != nil {
		return IdleCost{}, err
	}
	d := s1.Sub(s0)
	return IdleCost{Ops: d, CPU: (sumTreeCPU(procs) - cpu0) / d.Seconds}, nil
}

func remindersRun(ctx context.Context, e *Env, o SubsOptions) (SubsPoint, error) {
	pt := SubsPoint{What: "reminders", N: o.Reminders}
	defer e.StopAll()
	caller, hosts, err := actorMesh(ctx, e, "R", o.Hosts)
	if err != nil {
		return pt, err
	}
	all := append([]*Proc{caller}, hosts...)
	if pt.Before, err = idle(ctx, e, all, o.Idle); err != nil {
		return pt, err
	}
	schedule := func(i int, target time.Time) error {
		body := fmt.Sprintf(`{"path":"/fire","targetTime":%q,"data":%d}`, target.UTC().Format(time.RFC3339Nano), target.UnixMilli())
		_, err := e.Do(http.MethodPut, caller.URL()+"/kar/v1/actor/R/"+strconv.Itoa(i)+"/reminders/r", "application/json", body)
		return err
	}
	// Far in the future first: memory and the idle cost of a full schedule.
	rss0 := sumRSS(all)
	s0, err := e.Snap(ctx)
	if err != nil {
		return pt, err
	}
	start := time.Now()
	later := start.Add(time.Hour)
	if failed, err := Parallel(o.Reminders, o.InFlight, func(i int) error { return schedule(i, later) }); failed > 0 {
		return pt, fmt.Errorf("%d reminders not scheduled: %w", failed, err)
	}
	pt.Create = time.Since(start)
	time.Sleep(time.Second)
	s1, err := e.Snap(ctx)
	if err != nil {
		return pt, err
	}
	pt.RedisPer = float64(s1.RedisMemory-s0.RedisMemory) / float64(o.Reminders)
	pt.SidecarRSSPer = (sumRSS(all) - rss0) * (1 << 20) / float64(o.Reminders)
	if pt.After, err = idle(ctx, e, all, o.Idle); err != nil {
		return pt, err
	}
	pt.KafkaConns = kafkaConns(e, all)
	// Then due soon, spread over o.Spread: lateness = fired - target.
	pt.DuePerSecond = float64(o.Reminders) / o.Spread.Seconds()
	base := time.Now().Add(2*time.Second + time.Duration(o.Reminders)*100*time.Microsecond)
	if failed, err := Parallel(o.Reminders, o.InFlight, func(i int) error {
		return schedule(i, base.Add(o.Spread*time.Duration(i)/time.Duration(o.Reminders)))
	}); failed > 0 {
		return pt, fmt.Errorf("%d reminders not rescheduled: %w", failed, err)
	}
	deadline := base.Add(o.Spread + 2*time.Minute)
	var late []float64
	for {
		late = late[:0]
		for _, h := range hosts {
			s, err := e.componentStats(h)
			if err != nil {
				return pt, err
			}
			late = append(late, s.LateMs...)
		}
		if len(late) >= o.Reminders || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	pt.Fired = len(late)
	if len(late) > 0 {
		slices.Sort(late)
		msd := func(v float64) time.Duration { return time.Duration(v * float64(time.Millisecond)) }
		pt.LateP50, pt.LateP99, pt.LateMax = msd(late[len(late)/2]), msd(late[len(late)*99/100]), msd(late[len(late)-1])
	}
	if pt.Fired < o.Reminders {
		return pt, fmt.Errorf("only %d of %d reminders fired", pt.Fired, o.Reminders)
	}
	return pt, nil
}

func subscriptionsRun(ctx context.Context, e *Env, o SubsOptions) (SubsPoint, error) {
	pt := SubsPoint{What: "subscriptions", N: o.Subscriptions}
	defer e.StopAll()
	caller, hosts, err := actorMesh(ctx, e, "S", o.Hosts)
	if err != nil {
		return pt, err
	}
	all := append([]*Proc{caller}, hosts...)
	const topic = "scale-events"
	if _, err := e.Do(http.MethodPut, caller.URL()+"/kar/v1/event/"+topic, "application/json", `{"numPartitions":1}`); err != nil {
		return pt, err
	}
	if pt.Before, err = idle(ctx, e, all, o.Idle); err != nil {
		return pt, err
	}
	rss0 := sumRSS(all)
	s0, err := e.Snap(ctx)
	if err != nil {
		return pt, err
	}
	start := time.Now()
	// Each subscription is its own group, as KAR's default (the group is
	// the subscription id); they start from the oldest offset, so the
	// event published next reaches each one whenever it starts.
	if failed, err := Parallel(o.Subscriptions, o.InFlight, func(i int) error {
		_, err := e.Do(http.MethodPut, caller.URL()+"/kar/v1/actor/S/"+strconv.Itoa(i)+"/events/s"+strconv.Itoa(i), "application/json",
			fmt.Sprintf(`{"topic":%q,"path":"/on","oldestOffset":true}`, topic))
		return err
	}); failed > 0 {
		return pt, fmt.Errorf("%d subscriptions not made: %w", failed, err)
	}
	pt.Create = time.Since(start)
	publish := func() error {
		_, err := e.Do(http.MethodPost, caller.URL()+"/kar/v1/event/"+topic+"/publish", "application/json", `{"n":1}`)
		return err
	}
	delivered := func(want int64, limit time.Duration) (time.Duration, error) {
		t0 := time.Now()
		for {
			var n int64
			for _, h := range hosts {
				s, err := e.componentStats(h)
				if err != nil {
					return 0, err
				}
				n += s.Events
			}
			if n >= want {
				return time.Since(t0), nil
			}
			if time.Since(t0) > limit {
				return 0, fmt.Errorf("%d of %d events delivered after %s", n, want, limit)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err := publish(); err != nil {
		return pt, err
	}
	if pt.FirstDelivery, err = delivered(int64(o.Subscriptions), 5*time.Minute); err != nil {
		return pt, err
	}
	time.Sleep(time.Second)
	s1, err := e.Snap(ctx)
	if err != nil {
		return pt, err
	}
	pt.RedisPer = float64(s1.RedisMemory-s0.RedisMemory) / float64(o.Subscriptions)
	pt.SidecarRSSPer = (sumRSS(all) - rss0) * (1 << 20) / float64(o.Subscriptions)
	pt.KafkaConns = kafkaConns(e, all)
	if pt.After, err = idle(ctx, e, all, o.Idle); err != nil {
		return pt, err
	}
	if err := publish(); err != nil {
		return pt, err
	}
	if pt.FanOut, err = delivered(2*int64(o.Subscriptions), 5*time.Minute); err != nil {
		return pt, err
	}
	return pt, nil
}

func kafkaConns(e *Env, procs []*Proc) int {
	_, kport, _ := splitHostPort(e.brokerAt)
	var c []int
	for _, p := range procs {
		c = append(c, sockets(p.PID(), kport)[kport])
	}
	return median(c)
}

// Print writes the figures.
func (pt SubsPoint) Print(w io.Writer) {
	fmt.Fprintf(w, "%s: %d (each on its own actor instance)\n", pt.What, pt.N)
	fmt.Fprintf(w, "  create: %.2f s (%.0f/s); memory per %s: Redis %.0f B, sidecars' RSS %.0f B\n",
		pt.Create.Seconds(), float64(pt.N)/pt.Create.Seconds(), pt.What[:len(pt.What)-1], pt.RedisPer, pt.SidecarRSSPer)
	fmt.Fprintf(w, "  idle, without: %s\n", pt.Before)
	fmt.Fprintf(w, "  idle, with %d: %s; Kafka connections per sidecar %d\n", pt.N, pt.After, pt.KafkaConns)
	if pt.What == "reminders" {
		fmt.Fprintf(w, "  lateness (fired - target, %d fired, %.0f due per second): p50 %s, p99 %s, max %s\n",
			pt.Fired, pt.DuePerSecond, ms(pt.LateP50), ms(pt.LateP99), ms(pt.LateMax))
	} else {
		fmt.Fprintf(w, "  first event to every subscription (all starting): %.2f s; the next event to all %d: %.2f s\n",
			pt.FirstDelivery.Seconds(), pt.N, pt.FanOut.Seconds())
	}
}
