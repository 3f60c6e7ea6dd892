package main

// The chain floor: a sequential call's whole path built from bare parts,
// in as many processes as the mesh's: the bench's client calls a bare
// caller over HTTP, which produces the request and waits for its response
// on another partition; a bare responder reads the request, calls the
// bare component over HTTP and produces the response. Each part is the
// fastest of its kind (the bare HTTP client and server; the quickest of
// sarama, kgo and the wire client of wire.go), and the bench times it with
// the same client and loop as kar's sequential calls. Under load only
// sarama's and kgo's ends are timed: there a client must put the records
// of many calls in one request, which their producers do and the wire
// client, one record per request, does not.
//
// Why it is measured besides the floor of parts (floor.go): each hop of a
// sequential call reaches a process that has been idle since the call
// before it, and on a virtual machine waking an idle process costs far
// more than a ping-pong that never lets its two processes sleep, which is
// how the floor times a hop. The floor prints a hop after an idle spell
// too (idleHop), to show that cost. Nothing can serve a call below the
// chain floor on this machine; the floor of parts is a sum no chain of
// processes reaches.
//
// The chain is also loaded as kar's sidecars are, with the same calls in
// flight from the same client (chainCPU), and its two relays' CPU per call
// is the CPU floor of the mesh's path: what the sidecars' places cost when
// they do nothing but move the bytes, with the libraries' own producer and
// consumer.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"
)

// chainKafka is one end's Kafka client in the chain: it produces to one
// partition of the topic and reads another.
type chainKafka struct {
	// produce writes a record and waits for its acknowledgement.
	produce func(key, value []byte) error
	// send writes a record without waiting for it where the library
	// lets records go in batches (kgo), and as produce does elsewhere.
	send func(key, value []byte)
	// each calls fn for every record read, until reading fails.
	each func(fn func(key, value []byte))
}

func newChainKafka(lib, brokers, topic string, produceTo, consume int32) (k *chainKafka, err error) {
	defer func() {
		if k != nil && k.send == nil {
			k.send = func(key, value []byte) { k.produce(key, value) }
		}
	}()
	ctx := context.Background()
	switch lib {
	case "wire":
		return newWireKafka(brokers, topic, produceTo, consume)
	case "sarama":
		cfg := floorConfig()
		cons, err := sarama.NewConsumer([]string{brokers}, cfg)
		if err != nil {
			return nil, err
		}
		// Each chain has a fresh topic: reading it from the start misses
		// nothing produced before the first fetch.
		pc, err := cons.ConsumePartition(topic, consume, sarama.OffsetOldest)
		if err != nil {
			return nil, err
		}
		prod, err := sarama.NewSyncProducer([]string{brokers}, cfg)
		if err != nil {
			return nil, err
		}
		return &chainKafka{
			produce: func(key, value []byte) error {
				_, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: produceTo, Key: sarama.ByteEncoder(key), Value: sarama.ByteEncoder(value)})
				return err
			},
			each: func(fn func(key, value []byte)) {
				for m := range pc.Messages() {
					fn(m.Key, m.Value)
				}
			},
		}, nil
	case "kgo":
		cl, err := kgoClient(brokers, topic, consume)
		if err != nil {
			return nil, err
		}
		return &chainKafka{
			produce: func(key, value []byte) error {
				return cl.ProduceSync(ctx, &kgo.Record{Partition: produceTo, Key: key, Value: value}).FirstErr()
			},
			send: func(key, value []byte) {
				cl.Produce(ctx, &kgo.Record{Partition: produceTo, Key: key, Value: value}, nil)
			},
			each: func(fn func(key, value []byte)) {
				for {
					cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) { fn(r.Key, r.Value) })
				}
			},
		}, nil
	}
	return nil, fmt.Errorf("unknown library %q", lib)
}

// chainResponder is the chain's serving end: every request read on
// partition 0 is posted to the component at componentAddr, and its answer
// produced on partition 1 under the request's key. With concurrent, each
// request is served on a goroutine of its own, as a server sidecar serves
// many at once (chainCPU's load); without, one after the other, the
// quickest way for sequential calls (chainFloor).
func chainResponder(lib, brokers, topic, componentAddr string, concurrent bool) {
	if err := createFloorTopic(brokers, topic); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	k, err := newChainKafka(lib, brokers, topic, 1, 0)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	fmt.Println("ready")
	var bc bareClient
	url := "http://" + componentAddr + "/"
	serve := func(key, value []byte) {
		_, answer, err := bc.post(url, "application/json", string(value))
		if err != nil {
			answer = []byte(err.Error())
		}
		k.produce(key, answer)
	}
	k.each(func(key, value []byte) {
		if concurrent {
			go serve(key, value)
		} else {
			serve(key, value)
		}
	})
}

// chainCaller is the chain's calling end: a bare HTTP server on addr that
// produces each request's body on partition 0 and answers with the
// response read on partition 1.
func chainCaller(lib, brokers, topic, addr string) {
	k, err := newChainKafka(lib, brokers, topic, 0, 1)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var seq int64
	waiting := map[string]chan []byte{}
	go k.each(func(key, value []byte) {
		mu.Lock()
		ch := waiting[string(key)]
		delete(waiting, string(key))
		mu.Unlock()
		if ch != nil {
			ch <- value
		}
	})
	go func() { io.Copy(io.Discard, os.Stdin); os.Exit(0) }()
	go func() {
		if err := waitListening(addr, 10*time.Second); err == nil {
			fmt.Println("ready")
		}
	}()
	serveBare(addr, func(_ string, body []byte) (string, string, []byte) {
		ch := make(chan []byte, 1)
		mu.Lock()
		seq++
		key := strconv.FormatInt(seq, 36)
		waiting[key] = ch
		mu.Unlock()
		if err := k.produce([]byte(key), body); err != nil {
			return "502 Bad Gateway", "text/plain", []byte(err.Error())
		}
		select {
		case answer := <-ch:
			return "200 OK", "application/json", answer
		case <-time.After(10 * time.Second):
			return "504 Gateway Timeout", "text/plain", nil
		}
	})
}

// runningChain is a chain started by startChain: the URL its caller
// serves, the PIDs of its two relays (the processes in the sidecars'
// places), and stop, which ends its processes.
type runningChain struct {
	url               string
	caller, responder int
	stop              func()
}

// startChain starts a chain whose Kafka ends use lib, on a fresh topic,
// its responder concurrent or not, and waits until it answers a call.
func (e *env) startChain(lib string, concurrent bool) (c *runningChain, err error) {
	topic := fmt.Sprintf("chain-%s-%d", lib, e.nextRound())
	callerPort, _ := freePort()
	callerAddr := "127.0.0.1:" + strconv.Itoa(callerPort)
	// The component is the same as kar's: a child of kar run gets the
	// environment kar was given.
	componentAddr, _, stopComponent, err := e.startServer("bareserver", os.Environ())
	if err != nil {
		return nil, err
	}
	stops := []func(){stopComponent}
	stop := func() {
		for i := len(stops) - 1; i >= 0; i-- {
			stops[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	var pids []int
	// The responder creates the topic, so it starts first.
	for _, args := range [][]string{
		{"chainresponder", lib, e.brokers, topic, componentAddr, strconv.FormatBool(concurrent)},
		{"chaincaller", lib, e.brokers, topic, callerAddr},
	} {
		cmd := exec.Command(e.self, args...)
		cmd.Env = standInEnv()
		stdin, _ := cmd.StdinPipe()
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, err
		}
		// Closing its stdin ends the process (chainCaller, chainResponder).
		stops = append(stops, func() { stdin.Close(); cmd.Wait() })
		if line, err := readLine(stdout); err != nil || line != "ready" {
			return nil, fmt.Errorf("%s: %v %s", args[0], err, line)
		}
		pids = append(pids, cmd.Process.Pid)
	}
	url := "http://" + callerAddr + "/"
	if err := e.waitCall(url, 30*time.Second); err != nil {
		return nil, err
	}
	e.sequential(url, warmUp)
	return &runningChain{url: url, responder: pids[0], caller: pids[1], stop: stop}, nil
}

// chainFloor times n sequential calls through a chain whose Kafka ends
// use lib, and returns their p50.
func (e *env) chainFloor(lib string, n int) (time.Duration, error) {
	c, err := e.startChain(lib, false)
	if err != nil {
		return 0, err
	}
	defer c.stop()
	return percentile(e.sequential(c.url, n), 50), nil
}

// chainLoad is what the chain's two relays spent under the load kar's
// sidecars get (inflight calls in flight, from the same client, for dur):
// CPU seconds, read and write system calls and threads put to sleep per
// call of each, as the bench counts them for the sidecars (cpu.go), and
// calls per second.
type chainLoad struct {
	caller, responder           float64
	callerSys, responderSys     float64
	callerSleeps, respondSleeps float64
	rate                        float64
}

func (c chainLoad) cpu() float64 { return c.caller + c.responder }

// chainCPU loads a chain whose Kafka ends use lib as the bench loads kar.
//
// Why besides the floor's CPU per round trip: the floor's parts are timed
// in pairs of processes playing ping-pong, which keep each other awake;
// in the mesh's five processes each one sleeps whenever its turn is done,
// and every message that wakes it costs its sender a wake-up (on a virtual
// machine, an interrupt to the other CPU). The chain's relays pay those as
// the sidecars do, and nothing else: no envelope, no routing, no commits.
func (e *env) chainCPU(lib string, inflight int, dur time.Duration) (chainLoad, error) {
	c, err := e.startChain(lib, true)
	if err != nil {
		return chainLoad{}, err
	}
	defer c.stop()
	count := func() chainLoad {
		return chainLoad{
			caller: procCPU(c.caller), responder: procCPU(c.responder),
			callerSys: syscalls(c.caller), responderSys: syscalls(c.responder),
			callerSleeps: sleeps(c.caller), respondSleeps: sleeps(c.responder),
		}
	}
	before := count()
	calls, elapsed := e.throughput(c.url, inflight, dur)
	after := count()
	if calls == 0 {
		return chainLoad{}, fmt.Errorf("no call answered under load")
	}
	n := float64(calls)
	return chainLoad{
		caller:        (after.caller - before.caller) / n,
		responder:     (after.responder - before.responder) / n,
		callerSys:     (after.callerSys - before.callerSys) / n,
		responderSys:  (after.responderSys - before.responderSys) / n,
		callerSleeps:  (after.callerSleeps - before.callerSleeps) / n,
		respondSleeps: (after.respondSleeps - before.respondSleeps) / n,
		rate:          n / elapsed.Seconds(),
	}, nil
}
