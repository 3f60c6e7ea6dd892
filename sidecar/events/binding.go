package events

// kar's CloudEvents protocol bindings: how one event is read from and
// written to an HTTP message (HTTP Protocol Binding 1.0.2) and a Kafka
// record (Kafka Protocol Binding 1.0), in binary and structured content
// modes, for CloudEvents 1.0 and 0.3.
//
// sdk-go's protocol packages do this too, but they import
// sdk-go/v2/context, whose init builds a zap logger that keeps 448 KB of
// heap live for the whole life of every sidecar, and kar never logs
// through it. The event model (sdk-go/v2/event, binding/spec, types,
// binding/format) does not import it, so the bindings below use it: the
// attribute names and setters of each version come from binding/spec, the
// canonical strings of attribute values from types, and the JSON event
// format from the Event type itself.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/IBM/sarama"
	"github.com/cloudevents/sdk-go/v2/binding/format"
	"github.com/cloudevents/sdk-go/v2/binding/spec"
	ce "github.com/cloudevents/sdk-go/v2/event"
	"github.com/cloudevents/sdk-go/v2/types"
)

const (
	httpPrefix  = "ce-" // header names are case-insensitive: compared in lower case
	kafkaPrefix = "ce_"

	// kafkaContentType is the Kafka header that carries datacontenttype
	// in binary mode, and the event format in structured mode.
	kafkaContentType = "content-type"

	// partitionKey is the Partitioning extension's attribute, mapped to
	// the Kafka record key (the binding's key mapping).
	partitionKey = "partitionkey"
)

// errNoEvent: the message carries no CloudEvent at all, neither the
// structured content type nor a specversion header.
var errNoEvent = errors.New("no CloudEvent: neither a specversion header nor Content-Type " + ContentTypeCloudEvents)

// versionError: the specversion header names a version kar does not read.
type versionError struct{ header, version string }

func (e versionError) Error() string {
	return fmt.Sprintf("%s %q is not supported: send CloudEvents 1.0 (or 0.3)", e.header, e.version)
}

// readHTTP reads the event of an HTTP message: structured mode when
// Content-Type is the JSON event format, else binary mode when a
// ce-specversion header is present. Like any reader here it does not
// validate the event: the caller does, when it must.
func readHTTP(h http.Header, body []byte) (*ce.Event, error) {
	ct, _ := httpField(h, "content-type")
	switch mediaType(ct) {
	case ContentTypeCloudEvents:
		return readStructured(body)
	case contentTypeBatch:
		return nil, fmt.Errorf("Content-Type %s is a batch of events, not one event", contentTypeBatch)
	}
	sv, ok := httpField(h, httpPrefix+"specversion")
	if !ok || sv == "" {
		return nil, errNoEvent
	}
	return readHTTPBinary(h, sv, body)
}

// httpField is the first value of header name (lower case) in h, matched
// case-insensitively: a server hands canonical names, but an http.Header
// built by hand need not have them.
func httpField(h http.Header, name string) (string, bool) {
	if v := h[textproto.CanonicalMIMEHeaderKey(name)]; len(v) > 0 {
		return v[0], true
	}
	for k, v := range h {
		if len(v) > 0 && strings.EqualFold(k, name) {
			return v[0], true
		}
	}
	return "", false
}

// readHTTPBinary reads an event in binary mode: Content-Type is
// datacontenttype, each other ce- header an attribute or an extension
// (headerText), the body the data. Headers are read in name order,
// so that of two bad ones the same is reported every time.
func readHTTPBinary(h http.Header, specversion string, body []byte) (*ce.Event, error) {
	sv := headerText(specversion)
	v := spec.VS.Version(sv)
	if v == nil {
		return nil, versionError{httpPrefix + "specversion", sv}
	}
	ev := ce.New(v.String())
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if err := readHTTPHeader(&ev, v, strings.ToLower(k), h[k]); err != nil {
			return nil, err
		}
	}
	if len(body) > 0 {
		ev.DataEncoded = body
	}
	return &ev, nil
}

// readHTTPHeader sets the attribute one header of a binary-mode message
// carries, if any.
func readHTTPHeader(ev *ce.Event, v spec.Version, name string, values []string) error {
	if len(values) == 0 {
		return nil
	}
	if name == "content-type" {
		// An HTTP header with its own syntax (quoted parameters): taken
		// as it is, never percent-decoded.
		return setAttribute(ev, v, name, "datacontenttype", values[0])
	}
	attr, ok := strings.CutPrefix(name, httpPrefix)
	switch {
	case !ok:
		return nil // not about the event
	case attr == "datacontenttype":
		return fmt.Errorf("%s must not be sent in binary mode: Content-Type carries datacontenttype", name)
	}
	return setAttribute(ev, v, name, attr, headerText(values[0]))
}

// setAttribute sets the attribute name of ev to text, read from header:
// a context attribute of version v, or else an extension, kept as a
// string since binary mode carries no types.
func setAttribute(ev *ce.Event, v spec.Version, header, name, text string) error {
	a := v.Attribute(name)
	if a == nil {
		if err := ev.Context.SetExtension(name, text); err != nil {
			return fmt.Errorf("%s: %w", header, err)
		}
		return nil
	}
	var value any = text
	switch a.Kind() {
	case spec.SpecVersion:
		return nil // chose ev's version already
	case spec.Time:
		t, err := time.Parse(time.RFC3339Nano, text)
		if err != nil {
			return fmt.Errorf("%s %q is not an RFC 3339 time, such as 2026-01-02T15:04:05.123Z", header, text)
		}
		value = t
	}
	if err := a.Set(ev.Context, value); err != nil {
		return fmt.Errorf("%s %q: %w", header, text, err)
	}
	return nil
}

// readStructured reads an event in the JSON event format, which the
// Event type parses itself: data or data_base64, 0.3's
// datacontentencoding, extensions of any JSON type.
func readStructured(body []byte) (*ce.Event, error) {
	var ev ce.Event
	if err := format.JSON.Unmarshal(body, &ev); err != nil {
		if !json.Valid(body) {
			// The parser's own message about where it stopped is
			// obscure; the standard library says what is wrong plainly.
			var v any
			if jerr := json.Unmarshal(body, &v); jerr != nil {
				err = jerr
			}
			return nil, fmt.Errorf("the body is not JSON (%s): %w", ContentTypeCloudEvents, err)
		}
		if b := bytes.TrimSpace(body); len(b) > 0 && b[0] != '{' {
			return nil, errors.New("the body is JSON but not an object: a structured CloudEvent is one JSON object")
		}
		return nil, err
	}
	return &ev, nil
}

// newBinaryRequest is a POST of ev to url in binary mode: the data as the
// body, datacontenttype as Content-Type and every other attribute and
// extension as a ce- header (percentEncode).
func newBinaryRequest(ctx context.Context, url string, ev *ce.Event) (*http.Request, error) {
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	var req *http.Request
	var err error
	if data := ev.Data(); len(data) > 0 {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	} else {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, url, http.NoBody)
	}
	if err != nil {
		return nil, err
	}
	err = eachField(ev, func(name, value string) {
		if name == "datacontenttype" {
			req.Header.Set("Content-Type", value)
			return
		}
		req.Header[textproto.CanonicalMIMEHeaderKey(httpPrefix+name)] = []string{percentEncode(value)}
	})
	if err != nil {
		return nil, err
	}
	return req, nil
}

// eachField calls set with the name and canonical string of each context
// attribute of ev that is set, then of each extension, in name order.
func eachField(ev *ce.Event, set func(name, value string)) error {
	v := spec.VS.Version(ev.SpecVersion())
	if v == nil {
		return versionError{"specversion", ev.SpecVersion()}
	}
	for _, a := range v.Attributes() {
		value := a.Get(ev.Context)
		if value == nil {
			continue
		}
		s, err := types.Format(value)
		if err != nil {
			return fmt.Errorf("attribute %s: %w", a.Name(), err)
		}
		set(a.Name(), s)
	}
	exts := ev.Extensions()
	for _, name := range slices.Sorted(maps.Keys(exts)) {
		s, err := types.Format(exts[name])
		if err != nil {
			return fmt.Errorf("extension %s: %w", name, err)
		}
		set(name, s)
	}
	return nil
}

// writeRecord writes ev into msg in binary mode: the data as the value
// (none when there is no data), datacontenttype as the content-type
// header, every other attribute and extension as a ce_ header (UTF-8, as
// it is), and the partitionkey extension also as the record key, so that
// any Kafka client's partitioner keeps one key in one partition.
func writeRecord(ev *ce.Event, msg *sarama.ProducerMessage) error {
	headers := make([]sarama.RecordHeader, 0, 8)
	var key string
	err := eachField(ev, func(name, value string) {
		h := kafkaPrefix + name
		switch name {
		case "datacontenttype":
			h = kafkaContentType
		case partitionKey:
			key = value
		}
		headers = append(headers, sarama.RecordHeader{Key: []byte(h), Value: []byte(value)})
	})
	if err != nil {
		return err
	}
	msg.Headers = append(msg.Headers, headers...)
	if key != "" {
		msg.Key = sarama.StringEncoder(key)
	}
	if data := ev.Data(); len(data) > 0 {
		msg.Value = sarama.ByteEncoder(data)
	}
	return nil
}

// readRecord reads the event of a Kafka record: structured mode when the
// content-type header is the JSON event format, else binary mode when a
// ce_specversion header is present (errNoEvent when neither is). Header
// names match case-insensitively; of two headers with one name, the later
// counts.
func readRecord(headers []*sarama.RecordHeader, value []byte) (*ce.Event, error) {
	var ct, sv string
	for _, h := range headers {
		switch strings.ToLower(string(h.Key)) {
		case kafkaContentType:
			ct = string(h.Value)
		case kafkaPrefix + "specversion":
			sv = string(h.Value)
		}
	}
	switch mediaType(ct) {
	case ContentTypeCloudEvents:
		return readStructured(value)
	case contentTypeBatch:
		return nil, fmt.Errorf("content-type %s: the Kafka binding has no batch mode", contentTypeBatch)
	}
	if sv == "" {
		return nil, errNoEvent
	}
	v := spec.VS.Version(sv)
	if v == nil {
		return nil, versionError{kafkaPrefix + "specversion", sv}
	}
	ev := ce.New(v.String())
	for _, h := range headers {
		if err := readRecordHeader(&ev, v, strings.ToLower(string(h.Key)), string(h.Value)); err != nil {
			return nil, err
		}
	}
	if len(value) > 0 {
		ev.DataEncoded = value
	}
	return &ev, nil
}

// readRecordHeader sets the attribute one header of a binary-mode record
// carries, if any.
func readRecordHeader(ev *ce.Event, v spec.Version, name, value string) error {
	if name == kafkaContentType {
		return setAttribute(ev, v, name, "datacontenttype", value)
	}
	attr, ok := strings.CutPrefix(name, kafkaPrefix)
	switch {
	case !ok:
		return nil // another client's header, or kar's own (wrappedHeader)
	case attr == "datacontenttype":
		return fmt.Errorf("%s must not be sent in binary mode: the content-type header carries datacontenttype", name)
	}
	return setAttribute(ev, v, name, attr, value)
}

// upperHex are the digits of percent-encoding.
const upperHex = "0123456789ABCDEF"

// percentEncode makes an attribute's string fit an HTTP header: the
// control characters HTTP cannot carry become %XX (HTTP binding 3.1.3.2);
// everything else goes as it is. The binding asks for spaces, '"', '%'
// and non-ASCII to be encoded too, but sdk-go, which Knative's sinks run,
// neither encodes nor decodes (sdk-go issue 1331): encoded, "order 17"
// would reach them as "order%2017". Unencoded, they read what kar wrote
// before it had bindings of its own, and so does a reader that decodes.
func percentEncode(s string) string {
	n := 0
	for i := 0; i < len(s); i++ {
		if mustEncode(s[i]) {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if mustEncode(c) {
			b = append(b, '%', upperHex[c>>4], upperHex[c&0xf])
		} else {
			b = append(b, c)
		}
	}
	return string(b)
}

// mustEncode tells the bytes no HTTP header value may hold: control
// characters other than tab, and DEL.
func mustEncode(c byte) bool {
	return c < ' ' && c != '\t' || c == 0x7f
}

// headerText is the attribute string a ce- header value carries. A value
// that is a valid percent-encoding of UTF-8 (HTTP binding 3.1.3.2) is
// decoded; any other is taken as it came, as sdk-go takes every value:
// "50% off" from an sdk-go publisher stays "50% off", and "caf%C3%A9"
// from a publisher that encodes is "café".
func headerText(v string) string {
	if strings.IndexByte(v, '%') < 0 {
		return v
	}
	b := make([]byte, 0, len(v))
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b = append(b, v[i])
			continue
		}
		if i+2 >= len(v) || !isHex(v[i+1]) || !isHex(v[i+2]) {
			return v
		}
		b = append(b, unhex(v[i+1])<<4|unhex(v[i+2]))
		i += 2
	}
	if !utf8.Valid(b) {
		return v
	}
	return string(b)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unhex is the value of hex digit c.
func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
