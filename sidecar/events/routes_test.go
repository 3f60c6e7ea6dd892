package events

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/testenv"
)

func TestTopicRoutes(t *testing.T) {
	w := newWorld(t)
	s, _ := w.service(t, "sc1", nil)
	base := serve(t, s).URL + "/kar/v1/event/"

	st, _ := do(t, "PUT", base+"orders", "", "")
	if st != http.StatusCreated {
		t.Fatalf("create: got %d, want 201", st)
	}
	expect(t, "PUT", base+"orders", "application/json", "", 200, "Already existed")
	expect(t, "PUT", base+"wide", "application/json", `{"numPartitions": 3, "configEntries": {"retention.ms": "3600000"}}`, 201, "")
	if ps, err := w.kc.Partitions(kafka.EventTopic("wide")); err != nil || len(ps) != 3 {
		t.Fatalf("topic wide: partitions %v, %v; want 3", ps, err)
	}
	// KAR's Go struct spelled the members in lower case.
	expect(t, "PUT", base+"lower", "application/json", `{"numpartitions": 2}`, 201, "")
	if ps, _ := w.kc.Partitions(kafka.EventTopic("lower")); len(ps) != 2 {
		t.Fatalf("topic lower: %d partitions, want 2", len(ps))
	}

	for _, tc := range []struct {
		name, method, path, ct, body string
		status                       int
		says                         string
	}{
		{"bad options", "PUT", "x", "application/json", `{"numPartitions": "many"}`, 400, "not topic options"},
		{"replication beyond the brokers", "PUT", "rf", "application/json", `{"replicationFactor": 5}`, 400, "refused"},
		{"negative partitions", "PUT", "x", "application/json", `{"numPartitions": -1}`, 400, "positive"},
		{"bad topic name", "PUT", "a%20b", "", "", 400, "only letters"},
		{"bad topic name publish", "POST", "a%24b/publish", "application/json", `1`, 400, "only letters"},
		{"topic name too long", "PUT", strings.Repeat("x", 250), "", "", 400, "at most 249"},
		// kar's own topics are out of a user's reach through every route.
		{"publish to the mesh topic", "POST", kafka.Topic(testApp) + "/publish", "application/json", `1`, 400, "reserved"},
		{"ingress to the dead letters", "POST", kafka.DeadLetterTopic(testApp) + "/cloudevents", "application/cloudevents+json",
			`{"specversion":"1.0","id":"1","source":"s","type":"t"}`, 400, "reserved"},
		{"create a reserved topic", "PUT", "__kar_x", "", "", 400, "reserved"},
		{"delete the mesh topic", "DELETE", kafka.Topic(testApp), "", "", 400, "reserved"},
		{"publish bad JSON", "POST", "orders/publish", "application/json", `{"n":`, 400, "not valid JSON"},
		{"publish CloudEvent without id", "POST", "orders/publish", "application/cloudevents+json",
			`{"specversion":"1.0","source":"s","type":"t"}`, 400, "id"},
		{"publish CloudEvent-looking body without type", "POST", "orders/publish", "",
			`{"specversion":"1.0","id":"1","source":"s"}`, 400, "type"},
		{"publish batch", "POST", "orders/publish", "application/cloudevents-batch+json", `[]`, 400, "cloudevents"},
		{"publish too large", "POST", "orders/publish", "text/plain", strings.Repeat("x", 1<<20), 413, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, got := do(t, tc.method, base+tc.path, tc.ct, tc.body)
			if st != tc.status || !strings.Contains(got, tc.says) {
				t.Errorf("got %d %q, want %d saying %q", st, got, tc.status, tc.says)
			}
		})
	}

	// Publishing creates a missing topic; deleting removes it.
	expect(t, "POST", base+"fresh/publish", "application/json", `{"n":1}`, 200, "OK")
	kt := "fresh" // the Kafka topic is the event topic's own name, as in KAR
	if off, err := w.kc.GetOffset(kt, 0, -1); err != nil || off != 1 {
		t.Fatalf("after one publish: newest offset %d, %v; want 1", off, err)
	}
	expect(t, "DELETE", base+"fresh", "", "", 200, "OK")
	testenv.Eventually(t, 10*time.Second, func() bool {
		w.kc.RefreshMetadata(kt)
		ps, err := w.kc.Partitions(kt)
		return err != nil || len(ps) == 0
	}, "topic %s deleted", kt)
	expect(t, "DELETE", base+"fresh", "", "", 200, "OK") // deleting what is gone is fine
}

func TestSubscriptionRoutes(t *testing.T) {
	w := newWorld(t)
	s, _ := w.service(t, "sc1", nil)
	base := serve(t, s).URL + "/kar/v1/actor/Sub/a1/events"

	expect(t, "GET", base, "", "", 200, "[]")
	expect(t, "GET", base+"/s1", "", "", 404, "Not Found")
	expect(t, "GET", base+"/s1?nilOnAbsent=true", "", "", 200, "null")
	expect(t, "GET", base+"/s1?nilOnAbsent=maybe", "", "", 400, "*")
	expect(t, "DELETE", base+"/s1", "", "", 404, "Not Found")
	expect(t, "DELETE", base+"/s1?nilOnAbsent=true", "", "", 200, "0")

	// As kar-sdk sends it: path with a slash, contentType in camel case.
	expect(t, "PUT", base+"/s1", "application/json", `{"path":"/onEvent","topic":"t1","contentType":"application/json"}`, 204, "")
	expect(t, "PUT", base+"/s1", "application/json", `{"path":"/onEvent","topic":"t1","contentType":"application/json"}`, 200, "OK")
	expect(t, "PUT", base+"/s2", "application/json", `{"path":"other","topic":"t2","oldestOffset":true}`, 204, "")

	var got map[string]any
	if err := json.Unmarshal([]byte(expect(t, "GET", base+"/s1", "", "", 200, "*")), &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"actor": map[string]any{"Type": "Sub", "ID": "a1"}, "id": "s1", "path": "/onEvent",
		"topic": "t1", "group": "", "contenttype": "application/json", "oldestoffset": false}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("GET s1: got %v, want %v", got, want)
	}
	var list []Subscription
	if err := json.Unmarshal([]byte(expect(t, "GET", base, "", "", 200, "*")), &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "s1" || list[1].ID != "s2" || list[1].Path != "/other" || !list[1].OffsetOldest {
		t.Errorf("list: %+v", list)
	}
	// Another instance's subscriptions are its own.
	expect(t, "GET", strings.Replace(base, "/a1/", "/a10/", 1), "", "", 200, "[]")

	for _, tc := range []struct{ name, body, says string }{
		{"empty", ``, "empty"},
		{"bad JSON", `{"path":`, "not a subscription"},
		{"no topic", `{"path":"/m"}`, `"topic" is missing`},
		{"no path", `{"topic":"t"}`, `"path" is missing`},
		{"bad topic", `{"path":"/m","topic":"a/b"}`, "only letters"},
		{"reserved topic", `{"path":"/m","topic":"__kar_mesh_evapp"}`, "reserved"},
		{"bad content type", `{"path":"/m","topic":"t","contentType":"json;;"}`, "media type"},
		{"bad sink", `{"topic":"t","sink":"ftp://x"}`, "http(s) URL"},
		{"bad oldest", `{"path":"/m","topic":"t","oldestOffset":"perhaps"}`, "true or false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := do(t, "PUT", base+"/bad", "application/json", tc.body)
			if st != 400 || !strings.Contains(body, tc.says) {
				t.Errorf("got %d %q, want 400 saying %q", st, body, tc.says)
			}
		})
	}

	expect(t, "DELETE", base+"/s1", "", "", 200, "1")
	expect(t, "GET", base+"/s1?nilOnAbsent=true", "", "", 200, "null")
	expect(t, "PUT", base+"/s3", "application/json", `{"path":"/m","topic":"t1"}`, 204, "")
	expect(t, "DELETE", base, "", "", 200, "2")
	expect(t, "GET", base, "", "", 200, "[]")
	if n, _ := w.rdb.Exists(context.Background(), groupKey(s.keys, unitOf("t1", "s3"))).Result(); n != 0 {
		t.Errorf("offsets of a cancelled subscription are left in Redis")
	}
}

// TestBackendsDown: Redis or Kafka unreachable is 503 (kar-sdk retries it),
// and service resumes when they are back.
func TestBackendsDown(t *testing.T) {
	w := newWorld(t, testenv.DataDir(t.TempDir()))
	s, _ := w.service(t, "sc1", nil)
	srv := serve(t, s)
	subs := srv.URL + "/kar/v1/actor/Sub/a1/events"
	pub := srv.URL + "/kar/v1/event/t1/publish"
	expect(t, "POST", pub, "application/json", `1`, 200, "OK")

	if err := w.b.StopRedis(true); err != nil {
		t.Fatal(err)
	}
	for _, req := range [][2]string{{"GET", subs}, {"GET", subs + "/x"}, {"DELETE", subs}, {"PUT", subs + "/x"}} {
		st, body := do(t, req[0], req[1], "application/json", `{"path":"/m","topic":"t1"}`)
		if st != 503 || !strings.Contains(body, "Redis") {
			t.Errorf("%s %s with Redis down: %d %q, want 503 naming Redis", req[0], req[1], st, body)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.b.StartRedis(ctx); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() bool { st, _ := do(t, "GET", subs, "", ""); return st == 200 }, "Redis back")

	w.b.StopKafka()
	rctx, rcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer rcancel()
	req, _ := http.NewRequestWithContext(rctx, "POST", pub, strings.NewReader(`2`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("publish with Kafka down: %d, want 503", resp.StatusCode)
	}
	if err := w.b.StartKafka(); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() bool { st, _ := do(t, "POST", pub, "application/json", `3`); return st == 200 }, "Kafka back")
}
