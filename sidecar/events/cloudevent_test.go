package events

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
)

// roundTrip publishes body with header, writes the record as Kafka would
// hold it and reads it back as a subscriber's runner does.
func roundTrip(t *testing.T, header http.Header, body string) published {
	t.Helper()
	p, err := fromPublish("app", header, []byte(body))
	if err != nil {
		t.Fatalf("fromPublish: %v", err)
	}
	msg, err := toRecord(context.Background(), p, "t", 0)
	if err != nil {
		t.Fatal(err)
	}
	var value []byte
	if msg.Value != nil {
		value, _ = msg.Value.Encode()
	}
	cm := &sarama.ConsumerMessage{Topic: msg.Topic, Value: value, Offset: 7, Timestamp: time.Now()}
	for _, h := range msg.Headers {
		cm.Headers = append(cm.Headers, &sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	back, err := fromRecord("app", cm)
	if err != nil {
		t.Fatalf("fromRecord: %v", err)
	}
	return back
}

func TestPublishToDelivery(t *testing.T) {
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			out.Set(kv[i], kv[i+1])
		}
		return out
	}
	binary := h("Ce-Specversion", "1.0", "Ce-Id", "b1", "Ce-Source", "/s", "Ce-Type", "t", "Content-Type", "application/octet-stream")
	for _, tc := range []struct {
		name    string
		header  http.Header
		body    string
		subCT   string
		want    string // the argument delivered; "ce:" + the id when a structured event
		wrapped bool
	}{
		{"JSON object, no content type, default", nil, `{"a":1}`, "", `{"a":1}`, true},
		{"JSON string, default", nil, `"hi"`, "", `"hi"`, true},
		{"text, default", h("Content-Type", "text/plain"), `hi there`, "", `"hi there"`, true},
		{"text, json subscription", h("Content-Type", "text/plain"), `hi`, "application/json", `"hi"`, true},
		{"JSON, cloudevents subscription", h("Content-Type", "application/json"), `[1,2]`, ContentTypeCloudEvents, "ce:", true},
		{"JSON with charset", h("Content-Type", "application/json; charset=utf-8"), `{"a":2}`, "application/json", `{"a":2}`, true},
		{"empty body", h("Content-Type", "application/json"), ``, "application/json", `null`, true},
		{"structured CloudEvent without content type, default", nil,
			`{"specversion":"1.0","id":"s1","source":"/s","type":"t","data":{"x":1}}`, "", "ce:s1", false},
		{"structured CloudEvent, data subscription", h("Content-Type", ContentTypeCloudEvents),
			`{"specversion":"1.0","id":"s2","source":"/s","type":"t","data":{"x":2}}`, "text/plain", `{"x":2}`, false},
		{"binary mode, bytes, data subscription", binary, "\xff\x00\x01", "application/json", `"/wAB"`, false},
		{"binary mode, bytes, cloudevents subscription", binary, "\xff\x00\x01", ContentTypeCloudEvents, "ce:b1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := roundTrip(t, tc.header, tc.body)
			if p.wrapped != tc.wrapped {
				t.Errorf("wrapped = %v, want %v", p.wrapped, tc.wrapped)
			}
			arg, err := deliveryArg(p, tc.subCT)
			if err != nil {
				t.Fatal(err)
			}
			if !json.Valid(arg) {
				t.Fatalf("delivered argument %q is not JSON", arg)
			}
			if id, ok := strings.CutPrefix(tc.want, "ce:"); ok {
				var e map[string]any
				if err := json.Unmarshal(arg, &e); err != nil || e["specversion"] != "1.0" || (id != "" && e["id"] != id) {
					t.Fatalf("delivered %s, want the structured event %s", arg, id)
				}
				return
			}
			if string(arg) != tc.want {
				t.Errorf("delivered %s, want %s", arg, tc.want)
			}
			if got := string(actorArgs(arg)); got != "["+tc.want+"]" {
				t.Errorf("actor call body %s", got)
			}
		})
	}
}

func TestWrappedAttributes(t *testing.T) {
	before := time.Now().Add(-time.Second)
	p, err := fromPublish("shop", http.Header{"Content-Type": {"application/json"}}, []byte(`{"a":1}`))
	if err != nil {
		t.Fatal(err)
	}
	e := p.ev
	if e.SpecVersion() != "1.0" || e.Source() != "kar://shop" || e.Type() != EventType || e.ID() == "" ||
		e.DataContentType() != "application/json" || e.Time().Before(before) || e.Validate() != nil {
		t.Errorf("wrapped event %v", e)
	}
}

// TestForeignRecord: a record a plain Kafka client wrote (no ce_ headers)
// is delivered as an event around its value.
func TestForeignRecord(t *testing.T) {
	p, err := fromRecord("app", &sarama.ConsumerMessage{Topic: "t", Partition: 0, Offset: 3, Value: []byte(`{"raw":true}`)})
	if err != nil {
		t.Fatal(err)
	}
	arg, _ := deliveryArg(p, "")
	if string(arg) != `{"raw":true}` || p.ev.ID() != "t-0-3" {
		t.Errorf("foreign record delivered as %s (id %s)", arg, p.ev.ID())
	}
}
