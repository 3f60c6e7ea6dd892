package events

import (
	"bytes"
	"context"
	"errors"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/IBM/sarama"
	kafkasarama "github.com/cloudevents/sdk-go/protocol/kafka_sarama/v2"
	"github.com/cloudevents/sdk-go/v2/binding"
	ce "github.com/cloudevents/sdk-go/v2/event"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"
	"github.com/cloudevents/sdk-go/v2/types"
)

// The tests of binding.go hold kar's bindings against sdk-go's protocol
// packages, which the tests may link (the binary must not: binding.go
// says why): what one writes, the other reads, attribute by attribute and
// data byte for byte.

// testEvent is a CloudEvent of specversion with id, source /src and type
// t.test, set further by opts.
func testEvent(t *testing.T, specversion string, opts ...func(*ce.Event)) ce.Event {
	t.Helper()
	ev := ce.New(specversion)
	ev.SetID("id-1")
	ev.SetSource("/src")
	ev.SetType("t.test")
	for _, o := range opts {
		o(&ev)
	}
	if err := ev.Validate(); err != nil {
		t.Fatalf("test event: %v", err)
	}
	return ev
}

func withSubject(s string) func(*ce.Event) { return func(e *ce.Event) { e.SetSubject(s) } }

func withData(ct string, data []byte) func(*ce.Event) {
	return func(e *ce.Event) {
		if ct != "" {
			e.SetDataContentType(ct)
		}
		e.DataEncoded = data
	}
}

func withExt(name string, v any) func(*ce.Event) {
	return func(e *ce.Event) {
		if err := e.Context.SetExtension(name, v); err != nil {
			panic(err)
		}
	}
}

// interopEvents need no percent-encoding, so that kar and sdk-go (which
// neither percent-encodes nor decodes, sdk-go issue 1331) agree on them in
// HTTP binary mode as well as in Kafka.
func interopEvents(t *testing.T) []struct {
	name string
	ev   ce.Event
} {
	when := time.Date(2026, 3, 4, 5, 6, 7, 890123456, time.FixedZone("CET", 3600))
	uri, _ := url.Parse("https://example.com/a?b=c")
	return []struct {
		name string
		ev   ce.Event
	}{
		{"required attributes only", testEvent(t, "1.0")},
		{"every attribute, JSON data", testEvent(t, "1.0", withSubject("order-7"), func(e *ce.Event) {
			e.SetDataSchema("https://example.com/schema.json")
			e.SetTime(when)
		}, withData("application/json; charset=utf-8", []byte(`{"a":[1,2]}`)))},
		{"extensions of every type", testEvent(t, "1.0",
			withExt("str", "north"), withExt("int", int32(-42)), withExt("flag", true),
			withExt("uri", types.URI{URL: *uri}), withExt("ref", types.URIRef{URL: url.URL{Path: "/rel"}}),
			withExt("at", types.Timestamp{Time: when}), withExt("bin", []byte{0, 1, 0xfe}))},
		{"bytes that are not UTF-8", testEvent(t, "1.0", withData("application/octet-stream", []byte{0xff, 0, 1, 0x80}))},
		{"data without a content type", testEvent(t, "1.0", withData("", []byte("plain words")))},
		{"partition key", testEvent(t, "1.0", withExt(partitionKey, "customer-9"), withData("text/plain", []byte("k")))},
		{"trace context", testEvent(t, "1.0", withExt(extTraceparent, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
			withExt(extTracestate, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"))},
		{"CloudEvents 0.3", testEvent(t, "0.3", withSubject("s"), func(e *ce.Event) {
			e.SetDataSchema("https://example.com/03.json")
			e.SetTime(when)
		}, withExt("ext", "v"), withData("application/xml", []byte("<a/>")))},
	}
}

// sameEvent reports each attribute, extension (as its canonical string:
// binary mode carries no types) and data byte in which got differs from
// want.
func sameEvent(t *testing.T, what string, want, got *ce.Event) {
	t.Helper()
	if got == nil || got.Context == nil {
		t.Errorf("%s: no event", what)
		return
	}
	for _, a := range []struct{ name, want, got string }{
		{"specversion", want.SpecVersion(), got.SpecVersion()},
		{"id", want.ID(), got.ID()},
		{"source", want.Source(), got.Source()},
		{"type", want.Type(), got.Type()},
		{"subject", want.Subject(), got.Subject()},
		{"dataschema", want.DataSchema(), got.DataSchema()},
		{"datacontenttype", want.DataContentType(), got.DataContentType()},
	} {
		if a.want != a.got {
			t.Errorf("%s: %s %q, want %q", what, a.name, a.got, a.want)
		}
	}
	if !want.Time().Equal(got.Time()) {
		t.Errorf("%s: time %v, want %v", what, got.Time(), want.Time())
	}
	if w, g := extStrings(t, want), extStrings(t, got); !maps.Equal(w, g) {
		t.Errorf("%s: extensions %v, want %v", what, g, w)
	}
	if !bytes.Equal(want.Data(), got.Data()) {
		t.Errorf("%s: data %q, want %q", what, got.Data(), want.Data())
	}
}

func extStrings(t *testing.T, ev *ce.Event) map[string]string {
	t.Helper()
	out := map[string]string{}
	for k, v := range ev.Extensions() {
		s, err := types.Format(v)
		if err != nil {
			t.Fatalf("extension %s: %v", k, err)
		}
		out[k] = s
	}
	return out
}

// received is an HTTP request as a server got it, read by both bindings.
type received struct {
	header      http.Header
	ours, sdk   *ce.Event
	oursErr     error
	sdkErr      error
	contentSize int64
}

// receiver is a server that reads each request with kar's binding and
// sdk-go's, and hands both to post.
func receiver(t *testing.T) func(req *http.Request) received {
	t.Helper()
	got := make(chan received, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := received{header: r.Header.Clone(), contentSize: r.ContentLength}
		rec.ours, rec.oursErr = readHTTP(r.Header, body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec.sdk, rec.sdkErr = cehttp.NewEventFromHTTPRequest(r)
		got <- rec
	}))
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)
	return func(req *http.Request) received {
		t.Helper()
		req.URL, req.Host = u, u.Host
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return <-got
	}
}

// TestHTTPInterop: over HTTP, each event kar's writer posts reads the same
// with sdk-go's reader as with kar's, and each event sdk-go's writer
// posts, in binary and structured mode, reads the same with kar's.
func TestHTTPInterop(t *testing.T) {
	post := receiver(t)
	ctx := context.Background()
	for _, tc := range interopEvents(t) {
		t.Run(tc.name, func(t *testing.T) {
			req, err := newBinaryRequest(ctx, "http://placeholder/", &tc.ev)
			if err != nil {
				t.Fatal(err)
			}
			r := post(req)
			if r.oursErr != nil || r.sdkErr != nil {
				t.Fatalf("kar's request read by kar: %v, by sdk-go: %v", r.oursErr, r.sdkErr)
			}
			sameEvent(t, "kar's request read by sdk-go", &tc.ev, r.sdk)
			sameEvent(t, "kar's request read by kar", &tc.ev, r.ours)

			for _, mode := range []struct {
				name string
				ctx  context.Context
			}{{"binary", binding.WithForceBinary(ctx)}, {"structured", binding.WithForceStructured(ctx)}} {
				req, err := http.NewRequest(http.MethodPost, "http://placeholder/", nil)
				if err != nil {
					t.Fatal(err)
				}
				err = cehttp.WriteRequest(mode.ctx, binding.ToMessage(&tc.ev), req)
				if err != nil && mode.name == "structured" && tc.ev.DataContentType() == "" {
					continue // the JSON format takes data without a content type for JSON, and "plain words" is not
				}
				if err != nil {
					t.Fatal(err)
				}
				r := post(req)
				if r.oursErr != nil {
					t.Fatalf("sdk-go's %s request read by kar: %v", mode.name, r.oursErr)
				}
				if mode.name == "structured" && !strings.HasPrefix(r.header.Get("Content-Type"), ContentTypeCloudEvents) {
					t.Fatalf("sdk-go did not write structured mode: %v", r.header)
				}
				want := &tc.ev
				if mode.name == "structured" {
					want = r.sdk // JSON gives extensions their JSON types
				}
				sameEvent(t, "sdk-go's "+mode.name+" request read by kar", want, r.ours)
			}
		})
	}
}

// TestHTTPWriter: what kar's writer puts in the request itself.
func TestHTTPWriter(t *testing.T) {
	ev := testEvent(t, "1.0", withData("application/json; charset=utf-8", []byte(`{"x":1}`)), withExt("n", int32(3)))
	req, err := newBinaryRequest(context.Background(), "http://sink/", &ev)
	if err != nil {
		t.Fatal(err)
	}
	want := http.Header{
		"Ce-Specversion": {"1.0"}, "Ce-Id": {"id-1"}, "Ce-Source": {"/src"}, "Ce-Type": {"t.test"}, "Ce-N": {"3"},
		// Content-Type is HTTP's own header: its quoting rules, not percent-encoding.
		"Content-Type": {"application/json; charset=utf-8"},
	}
	if !maps.EqualFunc(req.Header, want, slices.Equal) {
		t.Errorf("headers %v, want %v", req.Header, want)
	}
	if req.Method != http.MethodPost || req.ContentLength != 7 || req.GetBody == nil {
		t.Errorf("%s, Content-Length %d, GetBody %v: want POST, 7 and a body to resend on redirect", req.Method, req.ContentLength, req.GetBody != nil)
	}
	empty := testEvent(t, "1.0")
	req, err = newBinaryRequest(context.Background(), "http://sink/", &empty)
	if err != nil || req.ContentLength != 0 || req.Header.Get("Content-Type") != "" {
		t.Errorf("no data: Content-Length %d, Content-Type %q, err %v", req.ContentLength, req.Header.Get("Content-Type"), err)
	}
	bad := ce.New()
	bad.SetSource("/s")
	bad.SetType("t")
	if _, err := newBinaryRequest(context.Background(), "http://sink/", &bad); err == nil || !strings.Contains(err.Error(), "id") {
		t.Errorf("an event without id: %v, want an error about id", err)
	}
}

// TestPercentEncoding: kar's writer sends values as sdk-go's does
// (unencoded), so that a sink on sdk-go reads what was published, except
// the control characters HTTP cannot carry; its reader reads them back.
func TestPercentEncoding(t *testing.T) {
	post := receiver(t)
	for _, tc := range []struct {
		name, value, header string
		sdkSends            bool // sdk-go's writer can send it too
	}{
		{"the binding's example", "Euro € 😀", "Euro € 😀", true},
		{"percent and double quote", `100% "sure"`, `100% "sure"`, true},
		{"printable ASCII as it is", "a-b_c.d~e!f*g'h(i)j;k:l@m&n=o+p$q,r/s?t#u[v]w{x}y|z^`<>\\", "a-b_c.d~e!f*g'h(i)j;k:l@m&n=o+p$q,r/s?t#u[v]w{x}y|z^`<>\\", true},
		{"a tab", "a\tb", "a\tb", true},
		{"a line feed", "a\nb", "a%0Ab", false},
		{"Latin-1 range", "café", "café", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := testEvent(t, "1.0", withSubject(tc.value), withExt("note", tc.value))
			req, err := newBinaryRequest(context.Background(), "http://placeholder/", &ev)
			if err != nil {
				t.Fatal(err)
			}
			r := post(req)
			if got := r.header.Get("Ce-Subject"); got != tc.header {
				t.Errorf("ce-subject %q, want %q", got, tc.header)
			}
			if got := r.header.Get("Ce-Note"); got != tc.header {
				t.Errorf("ce-note %q, want %q", got, tc.header)
			}
			if r.oursErr != nil {
				t.Fatal(r.oursErr)
			}
			sameEvent(t, "read back by kar", &ev, r.ours)
			if !tc.sdkSends {
				return
			}
			if r.sdkErr != nil {
				t.Fatalf("sdk-go's reader: %v", r.sdkErr)
			}
			sameEvent(t, "read by sdk-go", &ev, r.sdk)
			req, _ = http.NewRequest(http.MethodPost, "http://placeholder/", nil)
			if err := cehttp.WriteRequest(context.Background(), binding.ToMessage(&ev), req); err != nil {
				t.Fatal(err)
			}
			if r = post(req); r.oursErr != nil {
				t.Fatalf("sdk-go's %q: %v", r.header.Get("Ce-Subject"), r.oursErr)
			}
			sameEvent(t, "sdk-go's value read by kar", &ev, r.ours)
		})
	}
}

// TestHeaderDecoding: header values and names as the binding lets a
// sender write them.
func TestHeaderDecoding(t *testing.T) {
	for _, tc := range []struct{ name, value, want string }{
		{"lower-case hex", "caf%c3%a9", "café"},
		{"needlessly encoded", "%41%42c%2F", "ABc/"},
		{"one round of decoding", "%2541", "%41"},
		{"the binding's example", "Euro%20%E2%82%AC%20%F0%9F%98%80", "Euro € 😀"},
		{"raw UTF-8", "naïve", "naïve"},
		// Not a percent-encoding of UTF-8: as it came, as sdk-go reads it.
		{"a bare percent", "50% off", "50% off"},
		{"percent-encoding cut short", "abc%4", "abc%4"},
		{"an overlong UTF-8 sequence", "%C0%A0", "%C0%A0"},
		{"bytes that are not UTF-8", "%FF", "%FF"},
		{"quotes", `"a b"`, `"a b"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Lower-case and upper-case names, as an http.Header built
			// by hand may hold them.
			h := http.Header{"CE-SpecVersion": {"1.0"}, "CE-ID": {"1"}, "ce-Source": {"/s"}, "Ce-Type": {"t"},
				"ce-subject": {tc.value}, "content-TYPE": {"text/plain"}}
			ev, err := readHTTP(h, []byte("x"))
			if err != nil {
				t.Fatal(err)
			}
			if ev.Subject() != tc.want || ev.ID() != "1" || ev.Source() != "/s" || ev.DataContentType() != "text/plain" {
				t.Errorf("subject %q (want %q), id %q, source %q, datacontenttype %q", ev.Subject(), tc.want, ev.ID(), ev.Source(), ev.DataContentType())
			}
		})
	}
}

// TestStructuredHeaderCase: the structured content type is found under
// any case of its header name.
func TestStructuredHeaderCase(t *testing.T) {
	h := http.Header{"content-TYPE": {ContentTypeCloudEvents}}
	ev, err := readHTTP(h, []byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data":{"a":1}}`))
	if err != nil || string(ev.Data()) != `{"a":1}` {
		t.Errorf("got %v, %v", ev, err)
	}
}

// TestAcceptedAsBefore: messages sdk-go's readers took are read by kar's
// into the same event: structured mode's data_base64, JSON-typed
// extensions, 0.3's datacontentencoding, time offsets, 0.3 binary mode.
func TestAcceptedAsBefore(t *testing.T) {
	structured := http.Header{"Content-Type": {ContentTypeCloudEvents + "; charset=utf-8"}}
	for _, tc := range []struct {
		name   string
		header http.Header
		body   string
		check  func(*ce.Event) bool
	}{
		{"data_base64", structured,
			`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/octet-stream","data_base64":"/wAB"}`,
			func(e *ce.Event) bool { return bytes.Equal(e.Data(), []byte{0xff, 0, 1}) }},
		{"extensions of JSON types", structured,
			`{"specversion":"1.0","id":"1","source":"/s","type":"t","num":42,"yes":true,"str":"s"}`,
			func(e *ce.Event) bool { return e.Extensions()["num"] == int32(42) && e.Extensions()["yes"] == true }},
		{"0.3 datacontentencoding", structured,
			`{"specversion":"0.3","id":"1","source":"/s","type":"t","datacontenttype":"text/plain","datacontentencoding":"base64","data":"aGVsbG8="}`,
			func(e *ce.Event) bool { return string(e.Data()) == "hello" }},
		{"time with an offset", structured,
			`{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"2026-03-04T05:06:07.89+01:00"}`,
			func(e *ce.Event) bool { return e.Time().Equal(time.Date(2026, 3, 4, 4, 6, 7, 890000000, time.UTC)) }},
		{"JSON data", structured,
			`{"specversion":"1.0","id":"1","source":"/s","type":"t","datacontenttype":"application/json","data":{"a":[1,"b"]}}`,
			func(e *ce.Event) bool { return string(e.Data()) == `{"a":[1,"b"]}` }},
		{"0.3 binary", http.Header{"Ce-Specversion": {"0.3"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"},
			"Ce-Schemaurl": {"https://example.com/s"}, "Ce-Time": {"2026-03-04T05:06:07Z"}, "Content-Type": {"text/plain"}}, "hi",
			func(e *ce.Event) bool { return e.DataSchema() == "https://example.com/s" && string(e.Data()) == "hi" }},
		{"binary, a structured format kar does not know", http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"},
			"Ce-Type": {"t"}, "Content-Type": {"application/cloudevents+avro"}}, "\x00avro",
			func(e *ce.Event) bool { return e.DataContentType() == "application/cloudevents+avro" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, err := decodeHTTP(tc.header, []byte(tc.body))
			if err != nil {
				t.Fatalf("kar: %v", err)
			}
			sdk, err := binding.ToEvent(context.Background(), cehttp.NewMessage(tc.header, io.NopCloser(strings.NewReader(tc.body))))
			if err != nil {
				t.Fatalf("sdk-go: %v", err)
			}
			sameEvent(t, "kar against sdk-go", sdk, ours)
			if !tc.check(ours) {
				t.Errorf("read %v", ours)
			}
		})
	}
}

// TestBadHTTPEvents: what kar answers a publisher of a bad event, and
// that sdk-go refused it too.
func TestBadHTTPEvents(t *testing.T) {
	binary := func(kv ...string) http.Header {
		h := http.Header{"Ce-Specversion": {"1.0"}, "Ce-Id": {"1"}, "Ce-Source": {"/s"}, "Ce-Type": {"t"}, "Content-Type": {"text/plain"}}
		for i := 0; i+1 < len(kv); i += 2 {
			if kv[i+1] == "" {
				h.Del(kv[i])
			} else {
				h.Set(kv[i], kv[i+1])
			}
		}
		return h
	}
	structured := http.Header{"Content-Type": {ContentTypeCloudEvents}}
	for _, tc := range []struct {
		name       string
		header     http.Header
		body       string
		says       []string
		sdkRejects bool
	}{
		{"structured, no specversion", structured, `{"id":"1","source":"/s","type":"t"}`, []string{"not a valid CloudEvent", "specversion"}, true},
		{"structured, unknown specversion", structured, `{"specversion":"2.0","id":"1","source":"/s","type":"t"}`, []string{"specversion", "2.0"}, true},
		{"binary, unknown specversion", binary("Ce-Specversion", "2.0"), "x", []string{`ce-specversion "2.0" is not supported`, "1.0"}, true},
		{"neither mode", http.Header{"Content-Type": {"application/json"}}, `{}`, []string{"not a CloudEvent", "ce-*", ContentTypeCloudEvents}, true},
		{"binary, no id", binary("Ce-Id", ""), "x", []string{"not a valid CloudEvent", "id"}, true},
		{"binary, no source", binary("Ce-Source", ""), "x", []string{"source", "REQUIRED"}, true},
		{"binary, no type", binary("Ce-Type", ""), "x", []string{"type"}, true},
		{"structured, no type", structured, `{"specversion":"1.0","id":"1","source":"/s"}`, []string{"type"}, true},
		{"binary, bad time", binary("Ce-Time", "yesterday"), "x", []string{`ce-time "yesterday" is not an RFC 3339 time`}, true},
		{"structured, bad time", structured, `{"specversion":"1.0","id":"1","source":"/s","type":"t","time":"yesterday"}`, []string{"not a valid CloudEvent", "yesterday"}, true},
		{"structured body not JSON", structured, `hello`, []string{"not a valid CloudEvent", "not JSON", "invalid character"}, true},
		{"structured body cut short", structured, `{"specversion":`, []string{"not a valid CloudEvent", "not JSON"}, true},
		{"structured body not an object", structured, `[{"specversion":"1.0"}]`, []string{"not an object"}, true},
		{"binary with ce-datacontenttype", binary("Ce-Datacontenttype", "text/plain"), "x", []string{"ce-datacontenttype", "Content-Type"}, true},
		{"bad extension name", binary("Ce-Bad_name", "v"), "x", []string{"ce-bad_name", "attribute names"}, true},
		{"a batch as one event", binary("Content-Type", contentTypeBatch), "[]", []string{"batch"}, true},
		{"0.3, bad datacontentencoding", structured, `{"specversion":"0.3","id":"1","source":"/s","type":"t","datacontentencoding":"gzip","data":"x"}`, []string{"datacontentencoding", "base64"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := decodeHTTP(tc.header, []byte(tc.body))
			var bad errBadEvent
			if !errors.As(err, &bad) {
				t.Fatalf("got %v, %v: want a bad event (400)", ev, err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
			sdk, sdkErr := binding.ToEvent(context.Background(), cehttp.NewMessage(tc.header, io.NopCloser(strings.NewReader(tc.body))))
			if sdkErr == nil {
				sdkErr = sdk.Validate()
			}
			if (sdkErr != nil) != tc.sdkRejects {
				t.Errorf("sdk-go's verdict: %v, want rejected = %v", sdkErr, tc.sdkRejects)
			}
		})
	}
}

// sdkReadRecord reads msg as a consumer would with sdk-go's Kafka reader.
func sdkReadRecord(t *testing.T, msg *sarama.ProducerMessage) (*ce.Event, error) {
	t.Helper()
	cm := consumed(t, msg)
	headers := map[string][]byte{}
	var ct string
	for _, h := range cm.Headers {
		k := strings.ToLower(string(h.Key))
		headers[k] = h.Value
		if k == kafkaContentType {
			ct = string(h.Value)
		}
	}
	return binding.ToEvent(context.Background(), kafkasarama.NewMessage(cm.Value, ct, headers))
}

// consumed is msg as a consumer receives it.
func consumed(t *testing.T, msg *sarama.ProducerMessage) *sarama.ConsumerMessage {
	t.Helper()
	cm := &sarama.ConsumerMessage{Topic: msg.Topic}
	var err error
	if msg.Value != nil {
		if cm.Value, err = msg.Value.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	if msg.Key != nil {
		if cm.Key, err = msg.Key.Encode(); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range msg.Headers {
		cm.Headers = append(cm.Headers, &sarama.RecordHeader{Key: h.Key, Value: h.Value})
	}
	return cm
}

// TestKafkaInterop: each record kar writes reads the same with sdk-go's
// Kafka reader as with kar's, with the same key, and each record sdk-go
// writes, in binary and structured mode, reads the same with kar's. Kafka
// headers carry UTF-8 as it is: no percent-encoding.
func TestKafkaInterop(t *testing.T) {
	cases := interopEvents(t)
	cases = append(cases, struct {
		name string
		ev   ce.Event
	}{"UTF-8, spaces, percent and quotes", testEvent(t, "1.0", withSubject(`Euro € 😀 100% "sure"`), withExt("note", "a b%20c"))})
	ctx := context.Background()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ours := &sarama.ProducerMessage{Topic: "t"}
			if err := writeRecord(&tc.ev, ours); err != nil {
				t.Fatal(err)
			}
			for _, h := range ours.Headers {
				if k := string(h.Key); k != strings.ToLower(k) || !(strings.HasPrefix(k, kafkaPrefix) || k == kafkaContentType) {
					t.Errorf("header %q", k)
				}
			}
			sdk, err := sdkReadRecord(t, ours)
			if err != nil {
				t.Fatalf("kar's record read by sdk-go: %v", err)
			}
			sameEvent(t, "kar's record read by sdk-go", &tc.ev, sdk)
			cm := consumed(t, ours)
			back, err := readRecord(cm.Headers, cm.Value)
			if err != nil {
				t.Fatalf("kar's record read by kar: %v", err)
			}
			sameEvent(t, "kar's record read by kar", &tc.ev, back)

			theirs := &sarama.ProducerMessage{Topic: "t"}
			if err := kafkasarama.WriteProducerMessage(ctx, binding.ToMessage(&tc.ev), theirs); err != nil {
				t.Fatal(err)
			}
			if got, want := consumed(t, ours).Key, consumed(t, theirs).Key; !bytes.Equal(got, want) {
				t.Errorf("record key %q, sdk-go's %q", got, want)
			}
			cm = consumed(t, theirs)
			back, err = readRecord(cm.Headers, cm.Value)
			if err != nil {
				t.Fatalf("sdk-go's binary record read by kar: %v", err)
			}
			sameEvent(t, "sdk-go's binary record read by kar", &tc.ev, back)

			theirs = &sarama.ProducerMessage{Topic: "t"}
			err = kafkasarama.WriteProducerMessage(binding.WithForceStructured(ctx), binding.ToMessage(&tc.ev), theirs)
			if err != nil && tc.ev.DataContentType() == "" {
				return // as in TestHTTPInterop: not JSON, so no JSON event format
			}
			if err != nil {
				t.Fatal(err)
			}
			cm = consumed(t, theirs)
			if len(cm.Headers) != 1 || string(cm.Headers[0].Value) != ContentTypeCloudEvents {
				t.Fatalf("sdk-go did not write structured mode: %v", cm.Headers)
			}
			back, err = readRecord(cm.Headers, cm.Value)
			if err != nil {
				t.Fatalf("sdk-go's structured record read by kar: %v", err)
			}
			want, err := sdkReadRecord(t, theirs) // JSON gives extensions their JSON types
			if err != nil {
				t.Fatal(err)
			}
			sameEvent(t, "sdk-go's structured record read by kar", want, back)
		})
	}
}

// TestKafkaWriter: what kar's writer puts in the record itself.
func TestKafkaWriter(t *testing.T) {
	ev := testEvent(t, "1.0", withExt(partitionKey, "k-1"), withData("text/plain", []byte("v")))
	msg := &sarama.ProducerMessage{}
	if err := writeRecord(&ev, msg); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, h := range msg.Headers {
		got[string(h.Key)] = string(h.Value)
	}
	want := map[string]string{"ce_specversion": "1.0", "ce_id": "id-1", "ce_source": "/s" + "rc", "ce_type": "t.test",
		"content-type": "text/plain", "ce_partitionkey": "k-1"}
	if !maps.Equal(got, want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	if k, _ := msg.Key.Encode(); string(k) != "k-1" {
		t.Errorf("key %q, want the partitionkey", k)
	}
	empty := testEvent(t, "1.0")
	msg = &sarama.ProducerMessage{}
	if err := writeRecord(&empty, msg); err != nil || msg.Value != nil || msg.Key != nil {
		t.Errorf("no data: value %v, key %v, err %v: want neither (a record without value)", msg.Value, msg.Key, err)
	}
}

// TestBadRecords: records kar cannot read as events, and those it wraps
// as it always did (no CloudEvent, or a version it does not read).
func TestBadRecords(t *testing.T) {
	hs := func(kv ...string) []*sarama.RecordHeader {
		var out []*sarama.RecordHeader
		for i := 0; i+1 < len(kv); i += 2 {
			out = append(out, &sarama.RecordHeader{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		headers []*sarama.RecordHeader
		value   string
		says    []string // empty: read as an event
		wrapped bool     // fromRecord wraps the value instead
	}{
		{"no CloudEvents headers", hs("content-type", "application/json"), `{}`, []string{"no CloudEvent"}, true},
		{"unknown specversion", hs("ce_specversion", "2.0", "ce_id", "1"), `x`, []string{`ce_specversion "2.0" is not supported`}, true},
		{"bad time", hs("ce_specversion", "1.0", "ce_id", "1", "ce_source", "/s", "ce_type", "t", "ce_time", "soon"), `x`, []string{`ce_time "soon"`, "RFC 3339"}, false},
		{"structured, not JSON", hs("content-type", ContentTypeCloudEvents), `nope`, []string{"not JSON"}, false},
		{"batch", hs("content-type", contentTypeBatch), `[]`, []string{"batch"}, false},
		{"ce_datacontenttype", hs("ce_specversion", "1.0", "ce_datacontenttype", "text/plain"), `x`, []string{"ce_datacontenttype", "content-type"}, false},
		{"upper-case names, last of two wins", hs("CE_SPECVERSION", "1.0", "Ce_Id", "old", "ce_id", "new", "Content-Type", "text/plain"), `x`, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, err := readRecord(tc.headers, []byte(tc.value))
			if len(tc.says) == 0 {
				if err != nil || ev.ID() != "new" || ev.DataContentType() != "text/plain" {
					t.Fatalf("got %v, %v", ev, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("read %v, want an error", ev)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("%q does not say %q", err, s)
				}
			}
			p, err := fromRecord("app", &sarama.ConsumerMessage{Topic: "t", Offset: 5, Headers: tc.headers, Value: []byte(tc.value)})
			if tc.wrapped != (err == nil && p.wrapped && p.ev.ID() == "t-0-5") {
				t.Errorf("fromRecord: %+v, %v; want wrapped = %v", p, err, tc.wrapped)
			}
		})
	}
}

// TestPercentCodecs: what kar writes in a header it reads back, and
// nothing HTTP forbids is written.
func TestPercentCodecs(t *testing.T) {
	for _, s := range []string{"", "plain", " ", "%", `"`, "%%25", "\x00\x1f\x7f", "€", "😀 and 中文", `"quoted"`, "a\\b", "a\tb", "line\r\nbreak"} {
		enc := percentEncode(s)
		for i := 0; i < len(enc); i++ {
			if c := enc[i]; c < ' ' && c != '\t' || c == 0x7f {
				t.Errorf("percentEncode(%q) = %q holds %q", s, enc, c)
			}
		}
		if dec := headerText(enc); dec != s {
			t.Errorf("headerText(percentEncode(%q) = %q) = %q", s, enc, dec)
		}
	}
}
