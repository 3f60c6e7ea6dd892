package sidecar

import (
	"strings"
	"testing"

	"github.com/kar-runtime/kar/sidecar/httpx"
	"github.com/kar-runtime/kar/sidecar/mesh"
)

// printAsKAR prints as KAR 1.3.10's kar invoke and kar rest print.
func TestPrintAsKAR(t *testing.T) {
	const void = "Method completed normally with void result."
	karJSON := httpx.Fields{"Content-Type", "application/kar+json; charset=utf-8"}
	cases := []struct {
		name      string
		resp      mesh.Envelope
		void      string // "" for kar rest
		out, errs string
	}{
		{"void", mesh.Envelope{Status: 204}, void, void + "\n", ""},
		{"number", mesh.Envelope{Status: 200, Header: karJSON, Body: []byte(`{"value":42}`)}, void, "Method result: 42\n", ""},
		{"string", mesh.Envelope{Status: 200, Header: karJSON, Body: []byte(`{"value":"hi"}`)}, void, "Method result: hi\n", ""},
		{"object, Go's %v", mesh.Envelope{Status: 200, Header: karJSON, Body: []byte(`{"value":{"b":[1,2.5],"a":null}}`)}, void, "Method result: map[a:<nil> b:[1 2.5]]\n", ""},
		{"exception", mesh.Envelope{Status: 200, Header: karJSON, Body: []byte(`{"error":true,"message":"boom","stack":"Error: boom\n at x"}`)}, void, "", "[STDERR] Exception raised: boom\n[STDERR] Stacktrace: Error: boom\n at x\n"},
		{"malformed result", mesh.Envelope{Status: 200, Header: karJSON, Body: []byte(`nope`)}, void, "", "[STDERR] Internal error: malformed method result: "},
		{"not kar+json", mesh.Envelope{Status: 200, Body: []byte(`{"value":1}`)}, void, "{\"value\":1}\n", ""},
		{"actor error status", mesh.Envelope{Status: 500, Body: []byte("no")}, void, "", "[STDERR] HTTP status: 500\n[STDERR] no\n"},
		{"rest 200", mesh.Envelope{Status: 200, Body: []byte(`{"a":1}`)}, "", "{\"a\":1}\n", ""},
		{"rest status 0 is 200", mesh.Envelope{Body: []byte(`ok`)}, "", "ok\n", ""},
		{"rest 404", mesh.Envelope{Status: 404, Body: []byte("Not Found")}, "", "", "[STDERR] HTTP status: 404\n[STDERR] Not Found\n"},
		{"rest 204 is not 200 in KAR", mesh.Envelope{Status: 204}, "", "", "[STDERR] HTTP status: 204\n[STDERR] \n"},
	}
	for _, c := range cases {
		var out, errs strings.Builder
		printAsKAR(&c.resp, c.void, &out, &errs)
		if out.String() != c.out || !strings.HasPrefix(errs.String(), c.errs) || (c.errs == "") != (errs.Len() == 0) {
			t.Errorf("%s: stdout %q stderr %q, want %q %q", c.name, out.String(), errs.String(), c.out, c.errs)
		}
	}
}
