package mesh_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/mesh"
)

// health returns the status of a sidecar's health endpoint (0: no answer).
func health(base string) (int, string) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(base + "/kar/v1/system/health")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// greet makes one synchronous call to the greeter with its own timeout.
func greet(c *http.Client, base, name string) (int, error) {
	resp, err := c.Post(base+"/kar/v1/service/greeter/call/helloText", "text/plain", strings.NewReader(name))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// TestBrokerComesBackEmpty: the broker restarts without the application's
// topic (as a cluster that lost it). The running sidecars create the topic
// again and serve, with no restart and no new member; while they cannot
// serve, their health endpoint says so.
func TestBrokerComesBackEmpty(t *testing.T) {
	b := testenv.Backend(t) // no data directory: the broker restarts empty
	dir := needNodeExample(t, "service-hello-js")
	_, _ = startService(t, b, "server", "empty", "greeter", dir, "node", "server.js")
	_, base := sidecarAlone(t, b, "empty")
	if code, err := greet(testClient, base, "before"); err != nil || code != 200 {
		t.Fatalf("call before the restart: %d %v", code, err)
	}
	b.StopKafka()
	testenv.Eventually(t, 20*time.Second, func() bool {
		code, _ := health(base)
		return code == http.StatusServiceUnavailable
	}, "health to report the broker gone")
	// A call made meanwhile is refused, saying why, once the producer
	// has given up: the caller's goroutine waits only for the response,
	// and the refusal must reach it there (mesh.failCall).
	refused := time.Now()
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Post(base+"/kar/v1/service/greeter/call/helloText", "text/plain", strings.NewReader("meanwhile"))
	if err != nil {
		t.Fatalf("a call while the broker is gone: %v (want a 503)", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "cannot send the request") {
		t.Errorf("a call while the broker is gone: %d %q, want 503 saying the request cannot be sent", resp.StatusCode, body)
	}
	t.Logf("refused after %v", time.Since(refused).Round(time.Millisecond))
	if err := b.StartKafka(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c := &http.Client{Timeout: 10 * time.Second}
	testenv.Eventually(t, 40*time.Second, func() bool {
		code, err := greet(c, base, "after")
		return err == nil && code == 200
	}, "calls to work again without restarting a sidecar")
	t.Logf("calls work again %v after the broker came back", time.Since(start).Round(time.Millisecond))
	testenv.Eventually(t, 20*time.Second, func() bool {
		code, _ := health(base)
		return code == http.StatusOK
	}, "health back to OK")
}

// TestRedisOutageNoHungCall: Redis is killed (-9) for longer than a lease
// under 24 calls in flight, and restarted with its data (AOF). Every
// call ends (answered, or failed with an error) well within its timeout:
// none hangs for want of a response sent to a partition its caller left.
func TestRedisOutageNoHungCall(t *testing.T) {
	b := testenv.Backend(t, testenv.DataDir(t.TempDir()))
	dir := needNodeExample(t, "service-hello-js")
	startService(t, b, "server1", "outage", "greeter", dir, "node", "server.js")
	startService(t, b, "server2", "outage", "greeter", dir, "node", "server.js")
	waitServes(t, b, "outage", "greeter", 2)
	_, base := sidecarAlone(t, b, "outage")

	const inFlight = 24
	timeout := 45 * time.Second
	c := &http.Client{Timeout: timeout}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var ok, failed, hung atomic.Int64
	var hungMu sync.Mutex
	var hungNames []string
	for w := 0; w < inFlight; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("w%d-%d", w, i)
				code, err := greet(c, base, name)
				switch {
				case err != nil && errors.Is(err, context.DeadlineExceeded) || err != nil && strings.Contains(err.Error(), "Timeout"):
					hung.Add(1)
					hungMu.Lock()
					hungNames = append(hungNames, name)
					hungMu.Unlock()
				case err == nil && code == 200:
					ok.Add(1)
				default:
					failed.Add(1)
				}
			}
		}()
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return ok.Load() >= 100 }, "calls flowing")
	if err := b.StopRedis(true); err != nil {
		t.Fatal(err)
	}
	// Longer than the lease (1 s here): every lease expires.
	outage := time.Now()
	testenv.Eventually(t, 10*time.Second, func() bool { return time.Since(outage) > 3*time.Second }, "the outage to last 3 s")
	if err := b.StartRedis(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := ok.Load()
	testenv.Eventually(t, 30*time.Second, func() bool { return ok.Load() >= after+200 }, "calls flowing again after the outage")
	stop()
	wg.Wait()
	t.Logf("answered %d, failed %d, hung %d", ok.Load(), failed.Load(), hung.Load())
	if hung.Load() > 0 {
		t.Errorf("%d calls hung past %v: %v", hung.Load(), timeout, hungNames)
	}
	testenv.Eventually(t, 20*time.Second, func() bool {
		code, _ := health(base)
		return code == http.StatusOK
	}, "the caller's health back to OK")
}

// TestMemberHealsAfterExpiry does to one live sidecar what a Redis outage
// longer than a lease does to all: its lease, its registration and its
// place in the set of members are gone (a reader of the set drops ids
// whose record expired, racing with their registration). The sidecar
// takes its lease again, is routed to again and serves, on its own.
func TestMemberHealsAfterExpiry(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	startService(t, b, "server", "heal", "greeter", dir, "node", "server.js")
	_, base := sidecarAlone(t, b, "heal")
	ctx := context.Background()
	rdb, err := store.Connect(ctx, backendConfig(b))
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	keys := store.NewKeys("heal")
	ids, err := rdb.SMembers(ctx, keys.Sidecars()).Result()
	if err != nil || len(ids) != 2 {
		t.Fatalf("members %v %v, want 2", ids, err)
	}
	var serverID string
	var serverPart int32
	for _, id := range ids {
		var m struct {
			Partition int32
			Services  []string
		}
		s, _ := rdb.Get(ctx, keys.Sidecar(id)).Result()
		if json.Unmarshal([]byte(s), &m) == nil && len(m.Services) > 0 {
			serverID, serverPart = id, m.Partition
		}
	}
	if serverID == "" {
		t.Fatal("no server among the members")
	}
	// The outage, as it leaves Redis: lease, record and membership gone.
	if err := rdb.Del(ctx, keys.Lease(serverPart), keys.Sidecar(serverID)).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.SRem(ctx, keys.Sidecars(), serverID)
	testenv.Eventually(t, 10*time.Second, func() bool {
		owner, _ := rdb.Get(ctx, keys.Lease(serverPart)).Result()
		in, _ := rdb.SIsMember(ctx, keys.Sidecars(), serverID).Result()
		return owner == serverID && in
	}, "the server to take its lease again and be a member again")
	testenv.Eventually(t, 10*time.Second, func() bool {
		code, err := greet(testClient, base, "healed")
		return err == nil && code == 200
	}, "calls to reach the server")
}

// TestOtherApplicationsRecordsIgnored: records on an application's topic
// that another application wrote (or anyone crafted in its name) are not
// run. The control record, the same request in the application's own
// name, is run: the test's records would be executed if not refused.
func TestOtherApplicationsRecordsIgnored(t *testing.T) {
	b := testenv.Backend(t)
	dir := needNodeExample(t, "service-hello-js")
	server, _ := startService(t, b, "server", "victim", "greeter", dir, "node", "server.js")
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V2_8_0_0
	cfg.Producer.Return.Successes = true
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	kc, err := sarama.NewClient([]string{b.KafkaBrokers()}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	prod, err := sarama.NewSyncProducerFromClient(kc)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	topic := kafka.Topic("victim")
	parts, err := kc.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	send := func(app, name string) {
		env := &mesh.Envelope{Kind: mesh.KindRequest, App: app, ID: "x-" + name, From: "x", Service: "greeter",
			Method: "POST", Path: "/helloText", Header: httpx.Fields{"Content-Type", "text/plain"}, Body: []byte(name), Async: true}
		val, err := env.Encode()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range parts {
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: p, Value: sarama.ByteEncoder(val)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	send("attacker", "injected")
	send("victim", "control")
	server.WaitOutput(t, "Hello control!", 20*time.Second)
	waitCommitted(t, b, "victim")
	if strings.Contains(server.Output(), "injected") {
		t.Error("a record written in another application's name was run")
	}
}
