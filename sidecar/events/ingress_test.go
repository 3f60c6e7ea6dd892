package events

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/kar-runtime/kar/adapter/kafka"
	"github.com/kar-runtime/kar/internal/testenv"
)

func newEvent(id string, data any) cloudevents.Event {
	e := cloudevents.NewEvent()
	e.SetID(id)
	e.SetSource("/knative/test")
	e.SetType("dev.knative.test")
	if err := e.SetData(cloudevents.ApplicationJSON, data); err != nil {
		panic(err)
	}
	return e
}

// TestKnativeIngress: CloudEvents POSTed by the CloudEvents SDK (as
// Knative Eventing's dispatchers do) in binary, structured and batch mode
// reach the topic's subscribers; malformed ones are 400.
func TestKnativeIngress(t *testing.T) {
	w := newWorld(t)
	rec := &recorder{}
	s, _ := w.service(t, "sc1", rec.deliverAs("sc1"))
	base := serve(t, s).URL
	subscribe(t, base, "a1", "s1", `{"path":"/m","topic":"kn","contentType":"application/cloudevents+json"}`)
	run(t, s)
	target := base + "/kar/v1/event/kn/cloudevents"

	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(target))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if res := c.Send(ctx, newEvent("bin-1", map[string]int{"n": 1})); !cloudevents.IsACK(res) {
		t.Fatalf("binary send: %v", res)
	}
	if res := c.Send(cloudevents.WithEncodingStructured(ctx), newEvent("str-2", map[string]int{"n": 2})); !cloudevents.IsACK(res) {
		t.Fatalf("structured send: %v", res)
	}
	req, err := cehttp.NewHTTPRequestFromEvents(ctx, target, []cloudevents.Event{newEvent("bat-3", map[string]int{"n": 3}), newEvent("bat-4", map[string]int{"n": 4})})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("batch: %d, want 202", resp.StatusCode)
	}

	testenv.Eventually(t, 20*time.Second, func() bool { return rec.count() >= 4 }, "4 deliveries")
	var ids []string
	for _, d := range rec.snapshot() {
		var args []map[string]any
		if err := json.Unmarshal([]byte(d.body), &args); err != nil {
			t.Fatal(err)
		}
		e := args[0]
		if e["source"] != "/knative/test" || e["type"] != "dev.knative.test" || e["specversion"] != "1.0" {
			t.Errorf("delivered %v", e)
		}
		ids = append(ids, e["id"].(string))
	}
	if want := []string{"bin-1", "str-2", "bat-3", "bat-4"}; !slices.Equal(ids, want) {
		t.Errorf("delivered ids %v, want %v", ids, want)
	}

	for _, tc := range []struct {
		name, ct, body string
		header         []string
		says           string
	}{
		{"structured without id", "application/cloudevents+json", `{"specversion":"1.0","source":"/s","type":"t"}`, nil, "id"},
		{"structured without source", "application/cloudevents+json", `{"specversion":"1.0","id":"1","type":"t"}`, nil, "source"},
		{"structured bad JSON", "application/cloudevents+json", `{"specversion":`, nil, "not a valid CloudEvent"},
		{"structured unsupported specversion", "application/cloudevents+json", `{"specversion":"2.0","id":"1","source":"/s","type":"t"}`, nil, "specversion"},
		{"binary unsupported specversion", "application/json", `{}`, []string{"Ce-Specversion", "2.0", "Ce-Id", "1", "Ce-Source", "/s", "Ce-Type", "t"}, "not supported"},
		{"binary without type", "application/json", `{}`, []string{"Ce-Specversion", "1.0", "Ce-Id", "1", "Ce-Source", "/s"}, "type"},
		{"not a CloudEvent", "application/json", `{"x":1}`, nil, "not a CloudEvent"},
		{"batch not an array", "application/cloudevents-batch+json", `{"x":1}`, nil, "JSON array"},
		{"batch with a bad event", "application/cloudevents-batch+json", `[{"specversion":"1.0","id":"1","source":"/s","type":"t"},{"specversion":"1.0","id":"2"}]`, nil, "event 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := do(t, "POST", target, tc.ct, tc.body, tc.header...)
			if st != 400 || !strings.Contains(body, tc.says) {
				t.Errorf("got %d %q, want 400 saying %q", st, body, tc.says)
			}
		})
	}
	// Nothing malformed reached the topic.
	if off, err := w.kc.GetOffset(kafka.EventTopic("kn"), 0, -1); err != nil || off != 4 {
		t.Errorf("topic holds %d events (%v), want 4", off, err)
	}
}

// TestIngressBusy: beyond MaxIngressInFlight the ingress answers 429 with
// Retry-After, which Knative retries.
func TestIngressBusy(t *testing.T) {
	w := newWorld(t)
	s, _ := w.service(t, "sc1", nil, func(o *Options) { o.MaxIngressInFlight = 1 })
	target := serve(t, s).URL + "/kar/v1/event/kn/cloudevents"
	s.ingress <- struct{}{} // one request in flight
	st, body := do(t, "POST", target, "application/cloudevents+json", `{"specversion":"1.0","id":"1","source":"/s","type":"t"}`)
	if st != http.StatusTooManyRequests {
		t.Fatalf("got %d %q, want 429", st, body)
	}
	<-s.ingress
	st, body = do(t, "POST", target, "application/cloudevents+json", `{"specversion":"1.0","id":"1","source":"/s","type":"t"}`)
	if st != http.StatusAccepted {
		t.Fatalf("got %d %q, want 202", st, body)
	}
}

// sinkServer answers the statuses of script in turn (then 200) and
// records the CloudEvents it receives.
type sinkServer struct {
	mu     sync.Mutex
	script []int
	got    []cloudevents.Event
	status []int
}

func (ss *sinkServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ev, err := cehttp.NewEventFromHTTPRequest(r)
	io.Copy(io.Discard, r.Body)
	ss.mu.Lock()
	defer ss.mu.Unlock()
	st := http.StatusOK
	if len(ss.script) > 0 {
		st, ss.script = ss.script[0], ss.script[1:]
	}
	if err != nil {
		st = http.StatusBadRequest
	} else {
		ss.got = append(ss.got, *ev)
	}
	ss.status = append(ss.status, st)
	w.WriteHeader(st)
}

func (ss *sinkServer) snapshot() ([]cloudevents.Event, []int) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return append([]cloudevents.Event(nil), ss.got...), append([]int(nil), ss.status...)
}

// TestSinkDelivery: a subscription with a sink posts the topic's events as
// CloudEvents, retrying 503 and 429 with backoff until 2xx; a 400 goes to
// the dead letter sink with Knative's error extensions.
func TestSinkDelivery(t *testing.T) {
	w := newWorld(t)
	sink := &sinkServer{script: []int{503, 429, 200, 400}}
	sinkSrv := httptest.NewServer(sink)
	t.Cleanup(sinkSrv.Close)
	dls := &sinkServer{}
	dlsSrv := httptest.NewServer(dls)
	t.Cleanup(dlsSrv.Close)

	s, _ := w.service(t, "sc1", nil, func(o *Options) {
		o.Deliver = func(context.Context, string, string, string, string, []byte) error { return nil }
	})
	base := serve(t, s).URL
	subscribe(t, base, "bridge", "s1", `{"topic":"out","sink":"`+sinkSrv.URL+`","deadLetterSink":"`+dlsSrv.URL+`"}`)
	run(t, s)
	expect(t, "POST", base+"/kar/v1/event/out/publish", "application/json", `{"n":1}`, 200, "OK")
	expect(t, "POST", base+"/kar/v1/event/out/publish", "", `{"specversion":"1.0","id":"rejected","source":"/s","type":"t"}`, 200, "OK")
	expect(t, "POST", base+"/kar/v1/event/out/publish", "application/json", `{"n":3}`, 200, "OK")

	testenv.Eventually(t, 20*time.Second, func() bool { got, _ := sink.snapshot(); return len(got) >= 5 }, "5 posts to the sink")
	got, status := sink.snapshot()
	if want := []int{503, 429, 200, 400, 200}; !slices.Equal(status, want) {
		t.Errorf("sink answered %v, want %v", status, want)
	}
	if got[0].ID() != got[1].ID() || got[1].ID() != got[2].ID() || string(got[2].Data()) != `{"n":1}` || got[2].Type() != EventType {
		t.Errorf("retries of the first event: %v", got[:3])
	}
	if got[3].ID() != "rejected" || string(got[4].Data()) != `{"n":3}` {
		t.Errorf("then: %v %v", got[3], got[4])
	}
	testenv.Eventually(t, 10*time.Second, func() bool { d, _ := dls.snapshot(); return len(d) == 1 }, "dead letter")
	d, _ := dls.snapshot()
	if d[0].ID() != "rejected" || d[0].Extensions()["knativeerrorcode"] != "400" || d[0].Extensions()["knativeerrordest"] != sinkSrv.URL {
		t.Errorf("dead letter: %v", d[0])
	}
}

// TestKcatReadsEvents: a third-party Kafka client (kcat) reads what kar
// wrote: CloudEvents binary mode, attributes in ce_ headers, data as value.
func TestKcatReadsEvents(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat not on PATH (Debian: apt-get install kcat)")
	}
	w := newWorld(t)
	s, _ := w.service(t, "sc1", nil)
	base := serve(t, s).URL
	expect(t, "POST", base+"/kar/v1/event/audit/publish", "application/json", `{"order":42}`, 200, "OK")
	expect(t, "POST", base+"/kar/v1/event/audit/publish", "application/cloudevents+json",
		`{"specversion":"1.0","id":"ev-7","source":"/shop","type":"order.created","datacontenttype":"text/plain","data":"seven","shop":"north"}`, 200, "OK")

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kcat, "-C", "-b", w.b.KafkaBrokers(), "-t", kafka.EventTopic("audit"),
		"-o", "beginning", "-e", "-q", "-f", "%h %s\n").CombinedOutput()
	if err != nil {
		t.Fatalf("kcat: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 2 {
		t.Fatalf("kcat printed %q, want 2 records", out)
	}
	for _, want := range []string{"ce_specversion=1.0", "ce_type=" + EventType, "ce_source=" + Source(testApp), "content-type=application/json", "ce_id=", ` {"order":42}`} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("record 1 %q lacks %q", lines[0], want)
		}
	}
	for _, want := range []string{"ce_specversion=1.0", "ce_id=ev-7", "ce_source=/shop", "ce_type=order.created", "content-type=text/plain", "ce_shop=north", " seven"} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("record 2 %q lacks %q", lines[1], want)
		}
	}
}
