package appclient

import (
	"bufio"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// TestReadPlain checks that the fast reader of responses gives what
// http.ReadResponse gives exchange, and leaves the rest to it.
func TestReadPlain(t *testing.T) {
	for _, c := range []struct {
		raw  string
		fast bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello", true},
		{"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.1 201 Created\r\ncontent-type:  a/b \t\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 2\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n\r\n{}", true},
		{"HTTP/1.1 500 Internal Server Error\r\nConnection: Keep-Alive, Close\r\nContent-Length: 3\r\n\r\nbad", true},
		{"HTTP/1.1 204 No Content\r\nDate: Mon, 07 Dec 2026 00:00:00 GMT\r\n\r\n", true},
		{"HTTP/1.1 404 Not Found\r\nX-Empty:\r\nContent-Length: 1\r\n\r\nx", true},
		// Left to net/http.
		{"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel", false},                              // body on its way
		{"HTTP/1.1 200 OK\r\n\r\nhello", false},                                                 // read to the end
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", false}, // chunked
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx", false},
		{"HTTP/1.1 200 OK\r\nPragma: no-cache\r\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.1 200 OK\r\n folded: x\r\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.1 200 OK\r\nBad Key: x\r\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.1 200 OK\r\nX: a\x01b\r\nContent-Length: 1\r\n\r\nx", false},
		{"HTTP/1.1 2000 OK\r\nContent-Length: 1\r\n\r\nx", false},
	} {
		br := bufio.NewReader(strings.NewReader(c.raw))
		br.Peek(1)
		resp, closing, ok := readPlain(br)
		if ok != c.fast {
			t.Errorf("%q: fast %v, want %v", c.raw, ok, c.fast)
			continue
		}
		if !ok {
			if br.Buffered() != len(c.raw) {
				t.Errorf("%q: %d bytes taken from the buffer on the way to net/http", c.raw, len(c.raw)-br.Buffered())
			}
			continue
		}
		r, err := http.ReadResponse(bufio.NewReader(strings.NewReader(c.raw)), nil)
		if err != nil {
			t.Fatalf("%q: net/http: %v", c.raw, err)
		}
		b, err := readBody(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range hopHeaders {
			delete(r.Header, k)
		}
		got, gotHeader := *resp, resp.Header.Header()
		got.Header = nil
		want := Response{Status: r.StatusCode, Body: b}
		if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotHeader, r.Header) || closing != r.Close {
			t.Errorf("%q:\n got %+v %v closing %v\nwant %+v %v closing %v", c.raw, got, gotHeader, closing, want, r.Header, r.Close)
		}
		if br.Buffered() != 0 {
			t.Errorf("%q: %d bytes left", c.raw, br.Buffered())
		}
	}
}
