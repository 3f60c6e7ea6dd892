package cluster_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/kar-runtime/kar/adapter/store"
	"github.com/kar-runtime/kar/internal/testenv"
)

// TestRedisClusterPrimaryFails: the primary of the application's slot in
// a Redis Cluster with replicas is killed (-9) while actor calls with
// state run. Its replica takes over; every call is answered (none fails,
// none hangs), every increment is kept, and the mesh goes on: a new
// instance is placed and a reminder fires after the failover.
func TestRedisClusterPrimaryFails(t *testing.T) {
	w := newWorld(t, testenv.ClusterReplicas(1))
	const app = "failover-rc"
	w.actors(t, "host", app)
	_, base := w.sidecar(t, app)

	const workers = 4
	var (
		answered atomic.Int64
		mu       sync.Mutex
		failures []string
		counts   [workers]int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := "f" + strconv.Itoa(i)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := incr(base, id); err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					return
				}
				counts[i]++
				answered.Add(1)
			}
		}()
	}
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		wg.Wait()
	}()
	testenv.Eventually(t, 30*time.Second, func() bool { return answered.Load() >= 50 }, "calls answered before the kill")

	victim := w.rc.KillPrimaryOf(t, store.NewKeys(app).Sidecars())
	t.Logf("killed the primary %s of the application's slot after %d calls", victim, answered.Load())
	// One client per replica for all the looks (a client per look left
	// thousands of connections open by the end of a slow failover).
	replicas := make([]*redis.Client, len(w.rc.Replicas))
	for i := range replicas {
		replicas[i] = w.rc.ReplicaNode(t, i)
	}
	logged := time.Now()
	testenv.Eventually(t, 60*time.Second, func() bool {
		if replicaTookOver(replicas) {
			return true
		}
		if time.Since(logged) > 10*time.Second {
			// Said while waiting: a failure here once went unexplained.
			logged = time.Now()
			t.Logf("no replica took over yet: %s", replicaStates(w.rc, replicas))
		}
		return false
	}, "a replica to take over")
	before := answered.Load()
	testenv.Eventually(t, 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(failures) > 0 || answered.Load() >= before+100
	}, "calls answered after the failover")
	close(stop)
	wg.Wait()
	if len(failures) > 0 {
		t.Fatalf("calls failed across the failover: %v", failures)
	}
	for i := range workers {
		id := "f" + strconv.Itoa(i)
		if v, _ := call(t, base, id, "get").(float64); int(v) < counts[i] {
			t.Errorf("%s counts %v after %d answered increments", id, v, counts[i])
		}
	}
	// The mesh goes on: a new instance, and a reminder.
	if v := call(t, base, "after", "incr", 3); v != 3.0 {
		t.Errorf("a new instance after the failover: incr = %v", v)
	}
	if v := call(t, base, "after", "remind", 100, 5); v != "scheduled" {
		t.Fatalf("remind = %v", v)
	}
	testenv.Eventually(t, 20*time.Second, func() bool { return call(t, base, "after", "get") == 8.0 }, "the reminder fired after the failover (3 + 5)")
}

// replicaTookOver tells whether a replica serves as a primary in a
// cluster that is whole again.
func replicaTookOver(replicas []*redis.Client) bool {
	ctx := context.Background()
	for _, cl := range replicas {
		info, err := cl.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "role:master") {
			continue
		}
		state, err := cl.ClusterInfo(ctx).Result()
		return err == nil && strings.Contains(state, "cluster_state:ok")
	}
	return false
}

// replicaStates says each replica's role and cluster state, or why it
// could not be read.
func replicaStates(rc *testenv.RedisCluster, replicas []*redis.Client) string {
	ctx := context.Background()
	var out []string
	for i, cl := range replicas {
		addr := rc.Replicas[i]
		info, err := cl.Info(ctx, "replication").Result()
		role := "?"
		if err != nil {
			role = err.Error()
		} else if _, r, ok := strings.Cut(info, "role:"); ok {
			role, _, _ = strings.Cut(r, "\r\n")
		}
		state, err := cl.ClusterInfo(ctx).Result()
		cs := "?"
		if err != nil {
			cs = err.Error()
		} else if _, r, ok := strings.Cut(state, "cluster_state:"); ok {
			cs, _, _ = strings.Cut(r, "\r\n")
		}
		out = append(out, fmt.Sprintf("%s role=%s cluster_state=%s", addr, role, cs))
	}
	return strings.Join(out, "; ")
}

// incr calls Counter/id.incr(1); an error for anything but a 200 answer.
func incr(base, id string) error {
	resp, err := client.Post(base+"/kar/v1/actor/Counter/"+id+"/call/incr", "application/kar+json", strings.NewReader("[1]"))
	if err != nil {
		return fmt.Errorf("%s.incr: %w", id, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || strings.Contains(string(b), `"error"`) {
		return fmt.Errorf("%s.incr: %d %s", id, resp.StatusCode, b)
	}
	return nil
}
