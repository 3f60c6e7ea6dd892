package main

// Sequential calls, timed in rounds alternated with their floors.
//
// A sequential call's p50 and its floor's move with the machine by a
// quarter from one minute to the next on a shared 2-core virtual machine,
// and the two used to be timed a minute apart: the ratio moved by as much
// as the margin it was judged by (1.05-1.41x within one session). So the
// bench times them in rounds, each round timing the floor of parts, the
// chain floor and kar's calls back to back within about two seconds, and
// reports the median of the rounds' ratios beside the p50 of all their
// calls.
//
// A round's floor of parts takes each Kafka client (sarama, kgo, the wire
// client) once and the bare hop three times, each with processes of their
// own, and the quickest of each counts, as in the floor printed first
// (floor.go): ping-pong pairs are fast or slow by where the kernel first
// puts them. The round's chain floor is the wire chain's (chain.go).

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// seqRound is what one round timed: its floor of parts (Kafka round trip
// plus two hops), its chain floor, and kar's sequential service and actor
// calls (their latencies; actor is empty when not measured).
type seqRound struct {
	kafka, hop, chain time.Duration
	service, actor    []time.Duration
	// outService and outHop are wrk's p50s of the service call and the
	// bare hop (outside.go), 0 when wrk did not time them.
	outService, outHop time.Duration
}

// warmUp is how many calls each kind of call makes untimed in a round
// before its timed ones, as the floors' clients do.
const warmUp = 200

func (r seqRound) floor() time.Duration { return r.kafka + 2*r.hop }

// sequentialRounds times n sequential calls to serviceURL and to actorURL
// (when not empty) in rounds, each round with its floors when withFloor.
func (e *env) sequentialRounds(rounds, n int, serviceURL, actorURL string, withFloor bool) ([]seqRound, error) {
	per := max(n/rounds, 100)
	var out []seqRound
	for range rounds {
		var r seqRound
		if withFloor {
			var err error
			if r.kafka, r.hop, r.chain, err = e.roundFloors(per); err != nil {
				return nil, err
			}
		}
		// Warmed up as the floors' clients are (the chain's 200 calls,
		// the requesters' 200 round trips): the round's first calls
		// follow the teardown of the chain's processes.
		e.sequential(serviceURL, warmUp)
		r.service = e.sequential(serviceURL, per)
		if e.outside != nil {
			var err error
			if r.outService, r.outHop, err = e.outsideRound(serviceURL); err != nil {
				fmt.Printf("outside harness: stopped (%v)\n", err)
				e.outside = nil
			}
		}
		if actorURL != "" {
			e.sequential(actorURL, warmUp)
			r.actor = e.sequential(actorURL, per)
		}
		out = append(out, r)
	}
	return out, nil
}

// roundFloors times one round's floors with per round trips or calls each.
func (e *env) roundFloors(per int) (kafka, hop, chain time.Duration, err error) {
	kafkas := []func() (time.Duration, error){
		func() (time.Duration, error) { return e.measureFloor(per) },
	}
	for _, lib := range []string{"kgo", "wire"} {
		kafkas = append(kafkas, func() (time.Duration, error) {
			p50, _, err := e.kafkaFloor(lib, per, 1)
			return p50, err
		})
	}
	for _, measure := range kafkas {
		p50, err := measure()
		if err != nil {
			return 0, 0, 0, fmt.Errorf("Kafka round trip: %w", err)
		}
		if kafka == 0 || p50 < kafka {
			kafka = p50
		}
	}
	if hop, err = fastest(floorRounds*per, func(n int) (time.Duration, error) {
		p50, _, _, err := e.hopFloor("bare", "bareserver", n, 1)
		return p50, err
	}); err != nil {
		return 0, 0, 0, fmt.Errorf("HTTP hop: %w", err)
	}
	if chain, err = e.chainFloor("wire", per); err != nil {
		return 0, 0, 0, fmt.Errorf("chain floor: %w", err)
	}
	return kafka, hop, chain, nil
}

// roundsFigure is one kind of call's figures over the rounds.
type roundsFigure struct {
	p50, p99         time.Duration // of all the rounds' calls
	toFloor, toChain float64       // medians of the rounds' ratios
	floorLo, floorHi float64       // the rounds' lowest and highest ratio to the floor
	perRound         []string      // each round's ratio to its floor
}

// figure sums up the rounds for the calls calls picks out of a round.
func figure(rs []seqRound, calls func(seqRound) []time.Duration) roundsFigure {
	var all []time.Duration
	var toFloor, toChain []float64
	var f roundsFigure
	for _, r := range rs {
		c := calls(r)
		all = append(all, c...)
		p50 := float64(percentile(c, 50))
		toFloor = append(toFloor, p50/float64(r.floor()))
		toChain = append(toChain, p50/float64(r.chain))
		f.perRound = append(f.perRound, fmt.Sprintf("%.2f", p50/float64(r.floor())))
	}
	f.p50, f.p99 = percentile(all, 50), percentile(all, 99)
	f.toFloor, f.toChain = medianFloat(toFloor), medianFloat(toChain)
	f.floorLo, f.floorHi = slices.Min(toFloor), slices.Max(toFloor)
	return f
}

func medianFloat(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printRounds prints what each round timed.
func printRounds(rs []seqRound) {
	fmt.Printf("sequential calls in %d rounds, each timed back to back with its floors (rounds.go):\n", len(rs))
	for i, r := range rs {
		line := fmt.Sprintf("  round %d: floor %s (Kafka %s + 2 × %s), chain floor (wire) %s; service p50 %s", i+1, ms(r.floor()), ms(r.kafka), ms(r.hop), ms(r.chain), ms(percentile(r.service, 50)))
		if len(r.actor) > 0 {
			line += ", actor p50 " + ms(percentile(r.actor, 50))
		}
		if r.outService > 0 {
			line += fmt.Sprintf("; wrk: service p50 %s, bare hop %s", ms(r.outService), ms(r.outHop))
		}
		fmt.Println(line)
	}
}

// print prints the figures of kind ("service", "actor") with the target
// they are held to.
func (f roundsFigure) print(kind, target string) {
	fmt.Printf("sequential %s call: p50 %s, p99 %s = %.2f× floor (median of the rounds' ratios; %s; range %.2f-%.2f×)%s, %.2f× chain floor\n",
		kind, ms(f.p50), ms(f.p99), f.toFloor, strings.Join(f.perRound, ", "), f.floorLo, f.floorHi, target, f.toChain)
}

// CPU per call under load, in rounds alternated with the chain's relays.
//
// The CPU a call costs moves with the machine as its latency does (the
// same build gave 57 and 82 µs per service call in two runs an hour
// apart, and bare relays 50 and 68), and the chain's relays are loaded
// at the start of a run, the sidecars half a minute later. So after the
// run's loads the bench loads both again in rounds, back to back, and
// prints the median of the rounds' ratios of the sidecars' CPU per call to
// the relays'.

// cpuRound is what one round of loads cost per call: the chain's two
// relays (the cheaper of sarama's and kgo's ends) and both sidecars, for
// service calls and for actor calls (0 when not measured).
type cpuRound struct{ chain, service, actor float64 }

// cpuRounds loads the chain and the sidecars s rounds times, each load
// per long with inflight calls in flight. actorURL is nil when actor calls
// are not measured.
func (e *env) cpuRounds(rounds int, per time.Duration, inflight int, s sidecars, serviceURL string, actorURL func(int) string) ([]cpuRound, error) {
	var out []cpuRound
	for range rounds {
		var r cpuRound
		for _, lib := range []string{"sarama", "kgo"} {
			l, err := e.chainCPU(lib, inflight, per)
			if err != nil {
				return nil, fmt.Errorf("chain under load (%s): %w", lib, err)
			}
			if r.chain == 0 || l.cpu() < r.chain {
				r.chain = l.cpu()
			}
		}
		r.service = e.sidecarsCPU(s, func(int) string { return serviceURL }, inflight, per)
		if actorURL != nil {
			r.actor = e.sidecarsCPU(s, actorURL, inflight, per)
		}
		out = append(out, r)
	}
	return out, nil
}

// sidecarsCPU loads the sidecars s with calls to url for dur and returns
// their CPU seconds per call together.
func (e *env) sidecarsCPU(s sidecars, url func(int) string, inflight int, dur time.Duration) float64 {
	caller, server := procCPU(s.caller), procCPU(s.server)
	calls, _ := e.load(url, inflight, dur)
	if calls == 0 {
		return 0
	}
	return (procCPU(s.caller) - caller + procCPU(s.server) - server) / float64(calls)
}

func printCPURounds(rs []cpuRound, inflight int) {
	fmt.Printf("CPU per call of both sidecars, %d in flight, in %d rounds, each load back to back with the chain's relays under the same load:\n", inflight, len(rs))
	var service, actor []float64
	for i, r := range rs {
		line := fmt.Sprintf("  round %d: chain relays %s; service %s (%.2f×)", i+1, us(r.chain), us(r.service), r.service/r.chain)
		service = append(service, r.service/r.chain)
		if r.actor > 0 {
			line += fmt.Sprintf(", actor %s (%.2f×)", us(r.actor), r.actor/r.chain)
			actor = append(actor, r.actor/r.chain)
		}
		fmt.Println(line)
	}
	line := fmt.Sprintf("  median of the rounds' ratios to the relays: service %.2f× (%.2f-%.2f×)", medianFloat(service), slices.Min(service), slices.Max(service))
	if len(actor) > 0 {
		line += fmt.Sprintf(", actor %.2f× (%.2f-%.2f×)", medianFloat(actor), slices.Min(actor), slices.Max(actor))
	}
	fmt.Println(line)
}
