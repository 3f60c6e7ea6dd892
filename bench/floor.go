package main

// The floor: the path of a call built from bare parts, each in its own
// process as the sidecars are, taken the fastest way the parts allow, so
// that the ratio of kar's figures to it does not flatter kar.
//
//   - The Kafka round trip (request produced to one partition, read by a
//     responder that produces the response to another, read back) is timed
//     with both client libraries in reach, sarama and franz-go's kgo, and
//     with the wire client (wire.go: sarama's requests on connections of
//     their own, as kar's sidecars go), and the quickest one counts.
//   - A loopback HTTP hop on a kept-alive connection is timed with three
//     client/server pairs (net/http → net/http, a bare HTTP/1.1 client →
//     net/http, bare client → bare server), and the fastest one counts.
//   - Each is timed in floorRounds rounds, with processes of their own, and
//     the fastest round counts (fastest).
//
// The floor's CPU per round trip is the work a pair of sidecars cannot
// avoid, measured with the same number of calls in flight as the load: the
// Kafka requester and responder (kgo), plus the server side of one hop (a
// caller sidecar answers its component) and the client side of another (a
// server sidecar calls its component).
//
// The parts in the sidecars' places (the floor's pairs, the chain's relays)
// run under the GODEBUG setting kar's sidecars run under (internal/sysmon):
// Go's sysmon costs bare Go processes what it cost the sidecars, and a
// floor without the setting would be slower than those parts can go. The
// component, the client and the backend are kar's as well as the floors',
// and stay as they are.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/kar-runtime/kar/internal/sysmon"
)

// standInEnv is the environment of a process in a sidecar's place.
func standInEnv() []string { return sysmon.Env(os.Environ()) }

// floorResult is what the floor measured.
type floorResult struct {
	kafka, saramaRT, kgoRT, wireRT time.Duration
	hop                            time.Duration
	hops                           []hopResult
	// idleHop is a bare hop to a server idle for idleGap before it (the
	// client idle too), as every hop of a sequential call through the
	// mesh is; chain is the chain floor (chain.go), the quickest of
	// chainSarama, chainKgo and chainWire.
	idleHop                                 time.Duration
	chain, chainSarama, chainKgo, chainWire time.Duration
	// cpuKafka is the CPU per round trip of requester and responder
	// together with inflight round trips in flight; cpuHopServer and
	// cpuHopClient are those of each side of one hop, likewise.
	cpuKafka, cpuHopServer, cpuHopClient float64
	// chainLoad is what the chain's relays spent per call under the
	// load's inflight calls (chainCPU), the cheaper of chainLoadSarama
	// and chainLoadKgo.
	chainLoad, chainLoadSarama, chainLoadKgo chainLoad
}

type hopResult struct {
	name string
	p50  time.Duration
}

func (f floorResult) total() time.Duration { return f.kafka + 2*f.hop }

// cpu is the floor's CPU per round trip of the parts a pair of sidecars plays.
func (f floorResult) cpu() float64 { return f.cpuKafka + f.cpuHopServer + f.cpuHopClient }

func (e *env) measureFloorAll(n, inflight int, dur time.Duration) (floorResult, error) {
	var f floorResult
	var err error
	if f.saramaRT, err = fastest(n, e.measureFloor); err != nil {
		return f, fmt.Errorf("sarama round trip: %w", err)
	}
	for _, c := range []struct {
		lib string
		p50 *time.Duration
	}{{"kgo", &f.kgoRT}, {"wire", &f.wireRT}} {
		*c.p50, err = fastest(n, func(n int) (time.Duration, error) {
			p50, _, err := e.kafkaFloor(c.lib, n, 1)
			return p50, err
		})
		if err != nil {
			return f, fmt.Errorf("%s round trip: %w", c.lib, err)
		}
	}
	f.kafka = min(f.saramaRT, f.kgoRT, f.wireRT)
	if _, f.cpuKafka, err = e.kafkaFloor("kgo", 20*n, inflight); err != nil {
		return f, fmt.Errorf("kgo round trips in flight: %w", err)
	}
	for _, cfg := range []struct{ name, client, server string }{
		{"net/http → net/http", "nethttp", "component"},
		{"bare client → net/http", "bare", "component"},
		{"bare client → bare server", "bare", "bareserver"},
	} {
		p50, err := fastest(n, func(n int) (time.Duration, error) {
			p50, _, _, err := e.hopFloor(cfg.client, cfg.server, n, 1)
			return p50, err
		})
		if err != nil {
			return f, fmt.Errorf("HTTP hop %s: %w", cfg.name, err)
		}
		f.hops = append(f.hops, hopResult{cfg.name, p50})
		if f.hop == 0 || p50 < f.hop {
			f.hop = p50
		}
	}
	if _, f.cpuHopClient, f.cpuHopServer, err = e.hopFloor("bare", "bareserver", 20*n, inflight); err != nil {
		return f, fmt.Errorf("HTTP hops in flight: %w", err)
	}
	if f.idleHop, err = e.idleHopFloor(n); err != nil {
		return f, fmt.Errorf("HTTP hop after an idle spell: %w", err)
	}
	for _, c := range []struct {
		lib string
		p50 *time.Duration
	}{{"sarama", &f.chainSarama}, {"kgo", &f.chainKgo}, {"wire", &f.chainWire}} {
		if *c.p50, err = fastest(n, func(n int) (time.Duration, error) { return e.chainFloor(c.lib, n) }); err != nil {
			return f, fmt.Errorf("chain floor (%s): %w", c.lib, err)
		}
	}
	f.chain = min(f.chainSarama, f.chainKgo, f.chainWire)
	if f.chainLoadSarama, err = e.chainCPU("sarama", inflight, dur); err != nil {
		return f, fmt.Errorf("chain under load (sarama): %w", err)
	}
	if f.chainLoadKgo, err = e.chainCPU("kgo", inflight, dur); err != nil {
		return f, fmt.Errorf("chain under load (kgo): %w", err)
	}
	f.chainLoad = f.chainLoadSarama
	if f.chainLoadKgo.cpu() < f.chainLoad.cpu() {
		f.chainLoad = f.chainLoadKgo
	}
	return f, nil
}

// floorRounds is how many times fastest times a part of the floor, each
// time with processes of its own.
//
// Two processes playing ping-pong are fast or about three times slower
// depending on the CPUs the kernel first puts them on, and they stay
// there: of five runs of the bench with each part timed once, one found
// a bare hop of 0.067 ms where the others found 0.021-0.023, and that
// run's ratios (1.07x, 1.08x) flattered kar. The fastest of three rounds
// is the path the parts can take.
const floorRounds = 3

// fastest runs measure floorRounds times, n/floorRounds iterations each
// (at least 100), and returns the lowest p50.
func fastest(n int, measure func(n int) (time.Duration, error)) (time.Duration, error) {
	var best time.Duration
	for range floorRounds {
		p50, err := measure(max(n/floorRounds, 100))
		if err != nil {
			return 0, err
		}
		if best == 0 || p50 < best {
			best = p50
		}
	}
	return best, nil
}

// idleGap is how long the two ends of idleHopFloor's hop rest before each
// request: about what each process of the mesh's path rests between its
// turns in a sequential call.
const idleGap = 500 * time.Microsecond

// idleHopFloor times n bare hops from this process to a bare server, each
// after both have rested idleGap.
func (e *env) idleHopFloor(n int) (time.Duration, error) {
	addr, _, stop, err := e.startServer("bareserver", standInEnv())
	if err != nil {
		return 0, err
	}
	defer stop()
	var bc bareClient
	url := "http://" + addr + "/"
	lat := make([]time.Duration, 0, n)
	for i := 0; i < n+100; i++ {
		time.Sleep(idleGap)
		start := time.Now()
		if _, _, err := bc.post(url, "application/json", hopBody); err != nil {
			return 0, err
		}
		if i >= 100 { // warm-up
			lat = append(lat, time.Since(start))
		}
	}
	return percentile(lat, 50), nil
}

func (f floorResult) print(inflight int) {
	fmt.Printf("floor (bare parts, separate processes, fastest of each, best of %d rounds):\n", floorRounds)
	fmt.Printf("  Kafka round trip (request+response) p50: sarama %s, kgo %s, wire %s → %s\n", ms(f.saramaRT), ms(f.kgoRT), ms(f.wireRT), ms(f.kafka))
	var hs []string
	for _, h := range f.hops {
		hs = append(hs, fmt.Sprintf("%s %s", h.name, ms(h.p50)))
	}
	fmt.Printf("  loopback HTTP hop, kept alive, p50: %s → %s\n", strings.Join(hs, ", "), ms(f.hop))
	fmt.Printf("  floor = %s + 2 × %s = %s\n", ms(f.kafka), ms(f.hop), ms(f.total()))
	fmt.Printf("  the same bare hop after both ends rested %s, p50: %s\n", idleGap, ms(f.idleHop))
	fmt.Printf("  floor CPU per round trip, %d in flight: Kafka requester+responder (kgo) %s + HTTP server side %s + HTTP client side %s = %s\n",
		inflight, us(f.cpuKafka), us(f.cpuHopServer), us(f.cpuHopClient), us(f.cpu()))
	fmt.Printf("chain floor (a sequential call through bare parts in the mesh's five processes), p50: sarama %s, kgo %s, wire %s → %s = %.2f× floor\n",
		ms(f.chainSarama), ms(f.chainKgo), ms(f.chainWire), ms(f.chain), float64(f.chain)/float64(f.total()))
	fmt.Printf("chain floor CPU per call, %d in flight (its caller relay + responder relay, loaded as kar is): sarama %s + %s (%.0f calls/s), kgo %s + %s (%.0f calls/s) → %s = %.2f× the floor's CPU per round trip\n",
		inflight, us(f.chainLoadSarama.caller), us(f.chainLoadSarama.responder), f.chainLoadSarama.rate,
		us(f.chainLoadKgo.caller), us(f.chainLoadKgo.responder), f.chainLoadKgo.rate, us(f.chainLoad.cpu()), f.chainLoad.cpu()/f.cpu())
	for _, c := range []struct {
		lib string
		l   chainLoad
	}{{"sarama", f.chainLoadSarama}, {"kgo", f.chainLoadKgo}} {
		fmt.Printf("  %s relays: read and write system calls per call %.1f, %.1f; threads put to sleep per call %.2f, %.2f\n",
			c.lib, c.l.callerSys, c.l.responderSys, c.l.callerSleeps, c.l.respondSleeps)
	}
}

// kafkaFloor runs n round trips with lib ("kgo") between a requester and
// a responder process, inflight at a time, and returns the p50 and the CPU
// per round trip of both processes together.
func (e *env) kafkaFloor(lib string, n, inflight int) (time.Duration, float64, error) {
	topic := fmt.Sprintf("floor-%s-%d-%d", lib, inflight, e.nextRound())
	resp := exec.Command(e.self, "kresponder", lib, e.brokers, topic)
	resp.Env = standInEnv()
	rin, _ := resp.StdinPipe()
	rout, _ := resp.StdoutPipe()
	resp.Stderr = os.Stderr
	if err := resp.Start(); err != nil {
		return 0, 0, err
	}
	defer func() { rin.Close(); resp.Wait() }()
	if line, err := readLine(rout); err != nil || line != "ready" {
		return 0, 0, fmt.Errorf("responder: %v %s", err, line)
	}
	return e.runRequester(resp.Process.Pid, "krequester", lib, e.brokers, topic, strconv.Itoa(n), strconv.Itoa(inflight))
}

// hopFloor runs n HTTP requests from a client process of kind client to a
// server process of kind server, inflight at a time, and returns the p50
// and the CPU per request of each side.
func (e *env) hopFloor(client, server string, n, inflight int) (time.Duration, float64, float64, error) {
	addr, pid, stop, err := e.startServer(server, standInEnv())
	if err != nil {
		return 0, 0, 0, err
	}
	defer stop()
	return e.runRequesterCPU(pid, "hopclient", client, addr, strconv.Itoa(n), strconv.Itoa(inflight))
}

// startServer starts this program as an HTTP server of kind ("bareserver",
// "component") with environment env on a free port and waits until it
// listens; stop kills it.
func (e *env) startServer(kind string, env []string) (addr string, pid int, stop func(), err error) {
	port, _ := freePort()
	srv := exec.Command(e.self, kind)
	srv.Env = append(env, "KAR_APP_PORT="+strconv.Itoa(port))
	if err := srv.Start(); err != nil {
		return "", 0, nil, err
	}
	stop = func() { srv.Process.Kill(); srv.Wait() }
	addr = "127.0.0.1:" + strconv.Itoa(port)
	if err := waitListening(addr, 10*time.Second); err != nil {
		stop()
		return "", 0, nil, err
	}
	return addr, srv.Process.Pid, stop, nil
}

func (e *env) runRequester(peer int, args ...string) (time.Duration, float64, error) {
	p50, mine, theirs, err := e.runRequesterCPU(peer, args...)
	return p50, mine + theirs, err
}

// runRequesterCPU runs a requester process (args) against the process
// peer: the requester warms up, prints "go", runs, and prints its p50 (ns),
// its round trips and its CPU seconds over the run; peer's CPU over the
// same span is read from /proc. CPU figures are per round trip.
func (e *env) runRequesterCPU(peer int, args ...string) (time.Duration, float64, float64, error) {
	cmd := exec.Command(e.self, args...)
	cmd.Env = standInEnv()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	defer cmd.Wait()
	if line, err := readLine(out); err != nil || line != "go" {
		return 0, 0, 0, fmt.Errorf("requester: %v %s", err, line)
	}
	peer0 := procCPU(peer)
	line, err := readLine(out)
	peer1 := procCPU(peer)
	f := strings.Fields(line)
	if err != nil || len(f) != 3 {
		return 0, 0, 0, fmt.Errorf("requester: %v %s", err, line)
	}
	p50, _ := strconv.ParseInt(f[0], 10, 64)
	count, _ := strconv.ParseFloat(f[1], 64)
	cpu, _ := strconv.ParseFloat(f[2], 64)
	if count == 0 {
		return 0, 0, 0, fmt.Errorf("requester: no round trips")
	}
	return time.Duration(p50), cpu / count, (peer1 - peer0) / count, nil
}

// selfCPU is this process's CPU seconds (user + system).
func selfCPU() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// requesterLoop warms up, prints "go", runs n round trips (do), inflight at
// a time, and prints the p50, the count and its CPU seconds.
func requesterLoop(n, inflight int, do func() error) {
	for range warmUp {
		if err := do(); err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
	}
	fmt.Println("go")
	cpu0 := selfCPU()
	lat := make([][]time.Duration, inflight)
	var wg sync.WaitGroup
	var left atomic.Int64
	left.Store(int64(n))
	for w := 0; w < inflight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for left.Add(-1) >= 0 {
				start := time.Now()
				if do() == nil {
					lat[w] = append(lat[w], time.Since(start))
				}
			}
		}()
	}
	wg.Wait()
	cpu := selfCPU() - cpu0
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	fmt.Println(int64(percentile(all, 50)), len(all), cpu)
}

// kgoClient is the floor's franz-go client: no linger, one partition
// produced to by number, one consumed.
func kgoClient(brokers, topic string, consume int32) (*kgo.Client, error) {
	return kgo.NewClient(
		kgo.SeedBrokers(brokers),
		kgo.DefaultProduceTopic(topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(0),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.FetchMaxWait(500*time.Millisecond),
		// Each floor run has a fresh topic: reading it from the start
		// misses nothing produced before the first fetch.
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {consume: kgo.NewOffset().AtStart()}}),
	)
}

// kafkaResponder is the floor's responder process: every record read on
// partition 0 goes back on partition 1, as a serving sidecar answers.
func kafkaResponder(lib, brokers, topic string) {
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
	k.each(k.send)
	os.Exit(1) // each returns only when reading failed
}

// kafkaRequester is the floor's requester process: each round trip
// produces a keyed request to partition 0 and waits for its response on
// partition 1.
func kafkaRequester(lib, brokers, topic string, n, inflight int) {
	k, err := newChainKafka(lib, brokers, topic, 0, 1)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	waiting := map[string]chan struct{}{}
	go func() {
		k.each(func(key, _ []byte) {
			mu.Lock()
			ch := waiting[string(key)]
			delete(waiting, string(key))
			mu.Unlock()
			if ch != nil {
				close(ch)
			}
		})
		os.Exit(1) // each returns only when reading failed
	}()
	var seq atomic.Int64
	requesterLoop(n, inflight, func() error {
		key := strconv.FormatInt(seq.Add(1), 36)
		ch := make(chan struct{})
		mu.Lock()
		waiting[key] = ch
		mu.Unlock()
		if err := k.produce([]byte(key), []byte(`{"x":1}`)); err != nil {
			return err
		}
		select {
		case <-ch:
			return nil
		case <-time.After(10 * time.Second):
			return fmt.Errorf("no response to %s", key)
		}
	})
}

func createFloorTopic(brokers, topic string) error {
	c, err := sarama.NewClient([]string{brokers}, floorConfig())
	if err != nil {
		return err
	}
	defer c.Close()
	admin, err := sarama.NewClusterAdminFromClient(c)
	if err != nil {
		return err
	}
	if err := admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: 2, ReplicationFactor: 1}, false); err != nil && !strings.Contains(err.Error(), "already exists") {
		return err
	}
	return nil
}

const hopBody = `{"x":1}`

// hopClient is the floor's HTTP client process: kind "nethttp" (net/http's
// Transport) or "bare" (HTTP/1.1 written and read by hand on one kept-alive
// connection per request in flight).
func hopClient(kind, addr string, n, inflight int) {
	var do func() error
	switch kind {
	case "nethttp":
		hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
		url := "http://" + addr + "/"
		do = func() error {
			resp, err := hc.Post(url, "application/json", strings.NewReader(hopBody))
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			return resp.Body.Close()
		}
	case "bare":
		var bc bareClient
		url := "http://" + addr + "/"
		do = func() error {
			_, _, err := bc.post(url, "application/json", hopBody)
			return err
		}
	default:
		fmt.Println("error unknown client", kind)
		os.Exit(1)
	}
	requesterLoop(n, inflight, do)
}

type bareConn struct {
	nc net.Conn
	br *bufio.Reader
}

// readBareMessage reads one HTTP/1.1 message: its start line, and its
// body (Content-Length or chunked).
func readBareMessage(br *bufio.Reader) (start string, body []byte, err error) {
	n, chunked := 0, false
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return "", nil, err
		}
		if len(line) <= 2 {
			if start == "" {
				continue
			}
			break
		}
		switch {
		case start == "":
			start = string(line[:len(line)-2])
		case hasPrefixFold(line, "content-length:"):
			n, _ = strconv.Atoi(strings.TrimSpace(string(line[15:])))
		case hasPrefixFold(line, "transfer-encoding:"):
			chunked = strings.Contains(strings.ToLower(string(line)), "chunked")
		}
	}
	if !chunked {
		body = make([]byte, n)
		_, err = io.ReadFull(br, body)
		return start, body, err
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return "", nil, err
		}
		size, err := strconv.ParseInt(strings.TrimSpace(strings.SplitN(line, ";", 2)[0]), 16, 64)
		if err != nil {
			return "", nil, err
		}
		chunk := make([]byte, size+2) // and its CRLF
		if _, err := io.ReadFull(br, chunk); err != nil {
			return "", nil, err
		}
		if size == 0 {
			return start, body, nil
		}
		body = append(body, chunk[:size]...)
	}
}

func hasPrefixFold(line []byte, prefix string) bool {
	return len(line) >= len(prefix) && strings.EqualFold(string(line[:len(prefix)]), prefix)
}

// bareClient calls over HTTP/1.1 written and read by hand, one kept-alive
// connection per request in flight: the fastest client there is, for the
// floor and for the load alike.
type bareClient struct {
	mu    sync.Mutex
	conns map[string][]*bareConn
}

// post sends body to url ("http://host:port/path") and returns the status.
func (c *bareClient) post(url, contentType, body string) (int, []byte, error) {
	hostPath, _ := strings.CutPrefix(url, "http://")
	host, path, _ := strings.Cut(hostPath, "/")
	c.mu.Lock()
	var bc *bareConn
	if cs := c.conns[host]; len(cs) > 0 {
		bc = cs[len(cs)-1]
		c.conns[host] = cs[:len(cs)-1]
	}
	c.mu.Unlock()
	if bc == nil {
		nc, err := net.Dial("tcp", host)
		if err != nil {
			return 0, nil, err
		}
		bc = &bareConn{nc: nc, br: bufio.NewReader(nc)}
	}
	req := "POST /" + path + " HTTP/1.1\r\nHost: " + host + "\r\nContent-Type: " + contentType + "\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(bc.nc, req); err != nil {
		bc.nc.Close()
		return 0, nil, err
	}
	start, resp, err := readBareMessage(bc.br)
	if err != nil {
		bc.nc.Close()
		return 0, nil, err
	}
	c.mu.Lock()
	if c.conns == nil {
		c.conns = map[string][]*bareConn{}
	}
	c.conns[host] = append(c.conns[host], bc)
	c.mu.Unlock()
	// "HTTP/1.1 200 OK"
	status := 0
	if f := strings.Fields(start); len(f) >= 2 {
		status, _ = strconv.Atoi(f[1])
	}
	return status, resp, nil
}

// bareServer is the floor's bare HTTP/1.1 server, and the benchmark's
// component: it echoes each request's body on the same kept-alive
// connection, and hosts the actor type Counter (activation, deactivation,
// and methods that return their first argument).
func bareServer() {
	serveBare("127.0.0.1:"+os.Getenv("KAR_APP_PORT"), func(start string, body []byte) (string, string, []byte) {
		status, ctype := "200 OK", "application/json"
		// "METHOD /kar/impl/v1/actor/{type}/{id}[/{method}]?... HTTP/1.1"
		method, rest, _ := strings.Cut(start, " ")
		path, _, _ := strings.Cut(rest, " ")
		path, _, _ = strings.Cut(path, "?")
		if p, ok := strings.CutPrefix(path, "/kar/impl/v1/actor/"); ok {
			switch {
			case strings.Count(p, "/") >= 2:
				ctype = "application/kar+json"
				body = []byte(`{"value":` + strings.TrimSuffix(strings.TrimPrefix(string(body), "["), "]") + `}`)
			case method == "GET":
				status, body = "201 Created", nil
			default:
				body = nil
			}
		}
		return status, ctype, body
	})
}

// serveBare serves HTTP/1.1 written and read by hand on addr: handle gets
// each request's start line and body and returns the answer's status
// ("200 OK"), content type and body.
func serveBare(addr string, handle func(start string, body []byte) (status, ctype string, answer []byte)) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer nc.Close()
			br := bufio.NewReader(nc)
			bw := bufio.NewWriter(nc)
			for {
				start, body, err := readBareMessage(br)
				if err != nil {
					return
				}
				status, ctype, answer := handle(start, body)
				bw.WriteString("HTTP/1.1 " + status + "\r\nContent-Type: " + ctype + "\r\nContent-Length: ")
				bw.WriteString(strconv.Itoa(len(answer)))
				bw.WriteString("\r\n\r\n")
				bw.Write(answer)
				if bw.Flush() != nil {
					return
				}
			}
		}()
	}
}

func waitListening(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening: %w", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func us(sec float64) string { return fmt.Sprintf("%.1f µs", sec*1e6) }
