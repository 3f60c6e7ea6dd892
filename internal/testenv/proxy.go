package testenv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Proxy is a TCP proxy the test controls, put between one process and a
// backend (Redis, Kafka) to cut the network between them: Cut closes every
// connection and refuses new ones (each is reset as soon as it is accepted,
// so the port stays the proxy's); Stall stops forwarding without closing
// anything, as a network partition does (peers see silence, then the bytes
// held when it heals); Restore forwards again.
//
// A Kafka client learns the broker's address from metadata and connects to
// it directly after bootstrapping: StartKafkaProxy rewrites the brokers'
// addresses in Metadata and FindCoordinator responses to the proxy's own,
// so a client bootstrapped on the proxy keeps going through it. The broker
// and the other clients are unaffected: only the one process cut is cut.
type Proxy struct {
	ln      net.Listener
	target  string
	rewrite bool // Kafka: rewrite broker addresses to the proxy's

	mu  sync.Mutex
	cut bool
	// stalled is closed by Restore: forwarding waits on it while the
	// proxy is stalled (nil otherwise).
	stalled chan struct{}
	conns   map[net.Conn]struct{}
	wg      sync.WaitGroup
}

// StartProxy forwards a free loopback port to target (host:port) until
// the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return startProxy(t, target, false)
}

// StartKafkaProxy forwards a free loopback port to a one-broker Kafka
// cluster at target, rewriting the broker's advertised address to the
// proxy's. Give the proxy's Addr as the client's bootstrap broker.
func StartKafkaProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	return startProxy(t, target, true)
}

func startProxy(t testing.TB, target string, rewrite bool) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, rewrite: rewrite, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the proxy's port.
func (p *Proxy) Port() int { return p.ln.Addr().(*net.TCPAddr).Port }

// Cut closes every connection through the proxy and refuses new ones
// until Restore.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for c := range p.conns {
		reset(c)
	}
}

// Stall stops forwarding in both directions until Restore: connections
// stay open and new ones are accepted, but no byte passes; what was sent
// meanwhile is delivered after Restore, as TCP does when a partition heals
// before it gives up.
func (p *Proxy) Stall() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stalled == nil {
		p.stalled = make(chan struct{})
	}
}

// Restore forwards again, new connections and stalled ones.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
	if p.stalled != nil {
		close(p.stalled)
		p.stalled = nil
	}
}

// gate waits while the proxy is stalled.
func (p *Proxy) gate() {
	p.mu.Lock()
	ch := p.stalled
	p.mu.Unlock()
	if ch != nil {
		<-ch
	}
}

// gatedWriter writes only while the proxy is not stalled.
type gatedWriter struct {
	p *Proxy
	w io.Writer
}

func (g gatedWriter) Write(b []byte) (int, error) {
	g.p.gate()
	return g.w.Write(b)
}

// Conns is how many connections are open through the proxy (both halves
// counted once): a test waits for its process to have connected.
func (p *Proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns) / 2
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	if p.stalled != nil { // release the writers waiting on a stall
		close(p.stalled)
		p.stalled = nil
	}
	p.mu.Unlock()
	p.Cut()
	p.wg.Wait()
}

// reset closes c with an RST rather than a FIN, as a failed network path
// is seen by the peer that next writes.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	c.Close()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := p.cut
		p.mu.Unlock()
		if cut {
			reset(in)
			continue
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			reset(in)
			continue
		}
		if !p.track(in, out) {
			reset(in)
			reset(out)
			continue
		}
		p.wg.Add(2)
		if p.rewrite {
			k := &kafkaConn{proxyHost: p.host(), proxyPort: int32(p.Port()), pending: map[int32]apiCall{}}
			go p.pipe(in, out, k.requests)
			go p.pipe(out, in, k.responses)
		} else {
			go p.pipe(in, out, copyStream)
			go p.pipe(out, in, copyStream)
		}
	}
}

// track registers both halves of a connection unless a Cut came first.
func (p *Proxy) track(in, out net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cut {
		return false
	}
	p.conns[in], p.conns[out] = struct{}{}, struct{}{}
	return true
}

func (p *Proxy) host() string {
	h, _, _ := net.SplitHostPort(p.Addr())
	return h
}

// pipe copies src to dst with copy, then closes both.
func (p *Proxy) pipe(src, dst net.Conn, copy func(dst io.Writer, src io.Reader) error) {
	defer p.wg.Done()
	_ = copy(gatedWriter{p, dst}, src)
	p.mu.Lock()
	delete(p.conns, src)
	delete(p.conns, dst)
	p.mu.Unlock()
	src.Close()
	dst.Close()
}

func copyStream(dst io.Writer, src io.Reader) error {
	_, err := io.Copy(dst, src)
	return err
}

// apiCall is a request's API key and version, by which its response is decoded.
type apiCall struct{ key, version int16 }

// kafkaConn follows one client connection's requests so that the
// responses naming brokers can be rewritten.
type kafkaConn struct {
	proxyHost string
	proxyPort int32

	mu      sync.Mutex
	pending map[int32]apiCall // correlation id -> request
}

// maxFrame bounds a Kafka frame the proxy accepts (sarama's own limit is 100 MiB).
const maxFrame = 128 << 20

func readFrame(r io.Reader) ([]byte, error) {
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > maxFrame {
		return nil, fmt.Errorf("kafka frame of %d bytes", n)
	}
	frame := make([]byte, n)
	if _, err := io.ReadFull(r, frame); err != nil {
		return nil, err
	}
	return frame, nil
}

func writeFrame(w io.Writer, frame []byte) error {
	out := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(frame)), uint32(len(frame)))
	_, err := w.Write(append(out, frame...))
	return err
}

// requests forwards client frames, noting each one's API key and version
// (request header: key int16, version int16, correlation id int32, ...).
func (k *kafkaConn) requests(dst io.Writer, src io.Reader) error {
	for {
		frame, err := readFrame(src)
		if err != nil {
			return err
		}
		if len(frame) >= 8 {
			call := apiCall{int16(binary.BigEndian.Uint16(frame)), int16(binary.BigEndian.Uint16(frame[2:]))}
			k.mu.Lock()
			k.pending[int32(binary.BigEndian.Uint32(frame[4:]))] = call
			k.mu.Unlock()
		}
		if err := writeFrame(dst, frame); err != nil {
			return err
		}
	}
}

// responses forwards broker frames, rewriting those that name brokers.
func (k *kafkaConn) responses(dst io.Writer, src io.Reader) error {
	for {
		frame, err := readFrame(src)
		if err != nil {
			return err
		}
		if len(frame) >= 4 {
			corr := int32(binary.BigEndian.Uint32(frame))
			k.mu.Lock()
			call, ok := k.pending[corr]
			delete(k.pending, corr)
			k.mu.Unlock()
			if ok {
				if rewritten, err := k.rewrite(call, frame); err == nil {
					frame = rewritten
				}
			}
		}
		if err := writeFrame(dst, frame); err != nil {
			return err
		}
	}
}

// rewrite points the brokers of a Metadata or FindCoordinator response at
// the proxy; other responses are returned as they are.
func (k *kafkaConn) rewrite(call apiCall, frame []byte) ([]byte, error) {
	resp := kmsg.ResponseForKey(call.key)
	req := kmsg.RequestForKey(call.key)
	if resp == nil || req == nil {
		return frame, nil
	}
	switch resp.(type) {
	case *kmsg.MetadataResponse, *kmsg.FindCoordinatorResponse:
	default:
		return frame, nil
	}
	req.SetVersion(call.version)
	resp.SetVersion(call.version)
	// Response header: correlation id, then tagged fields when flexible.
	hdr := 4
	if req.IsFlexible() {
		n, err := skipTags(frame[hdr:])
		if err != nil {
			return nil, err
		}
		hdr += n
	}
	if err := resp.ReadFrom(frame[hdr:]); err != nil {
		return nil, err
	}
	switch r := resp.(type) {
	case *kmsg.MetadataResponse:
		for i := range r.Brokers {
			r.Brokers[i].Host, r.Brokers[i].Port = k.proxyHost, k.proxyPort
		}
	case *kmsg.FindCoordinatorResponse:
		if r.Host != "" {
			r.Host, r.Port = k.proxyHost, k.proxyPort
		}
		for i := range r.Coordinators {
			r.Coordinators[i].Host, r.Coordinators[i].Port = k.proxyHost, k.proxyPort
		}
	}
	return resp.AppendTo(append([]byte(nil), frame[:hdr]...)), nil
}

// skipTags returns the length of a tagged-fields section at the start of b.
func skipTags(b []byte) (int, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, errors.New("bad tagged fields")
	}
	off := n
	for range count {
		_, n := binary.Uvarint(b[off:]) // tag
		if n <= 0 {
			return 0, errors.New("bad tag")
		}
		off += n
		size, n := binary.Uvarint(b[off:])
		if n <= 0 || uint64(len(b)-off-n) < size {
			return 0, errors.New("bad tag size")
		}
		off += n + int(size)
	}
	return off, nil
}

// HostPort splits a proxy's address for environment variables such as
// REDIS_HOST and REDIS_PORT.
func (p *Proxy) HostPort() (string, string) {
	return p.host(), strconv.Itoa(p.Port())
}
