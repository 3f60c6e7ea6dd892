package httpx

import (
	"errors"
	"net/url"
	"testing"
)

func TestCheckName(t *testing.T) {
	tests := []struct {
		name, s string
		ok      bool
	}{
		{"plain", "c1", true},
		{"dots", "..", true},
		{"slash", "a/b", true},
		{"query and percent", "a?b=%2F#", true},
		{"unicode", "ü-日本", true},
		{"space and tab-free", "a b", true},
		{"empty", "", false},
		{"NUL", "a\x00", false},
		{"CR LF", "a\r\nb", false},
		{"tab", "a\tb", false},
		{"DEL", "a\x7f", false},
		{"invalid UTF-8", "a\xffb", false},
		{"truncated UTF-8", "\xc3", false},
		{"surrogate half", "\xed\xa0\x80", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckName("actor id", tt.s)
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrBadName) {
				t.Fatalf("CheckName(%q) = %v, want ok=%v", tt.s, err, tt.ok)
			}
		})
	}
}

func TestCheckMethod(t *testing.T) {
	tests := []struct {
		method string
		ok     bool
	}{
		{"incr", true},
		{"a.b", true},
		{"...", true},
		{"secret?q=1", true},
		{"", false},
		{".", false},
		{"..", false},
		{"a/b", false},
		{"../../admin", false},
		{"/", false},
		{"m\x00", false},
		{"\xff", false},
	}
	for _, tt := range tests {
		if err := CheckMethod(tt.method); tt.ok != (err == nil) {
			t.Errorf("CheckMethod(%q) = %v, want ok=%v", tt.method, err, tt.ok)
		}
		if err := CheckMethodPath("/" + tt.method); tt.ok != (err == nil) {
			t.Errorf("CheckMethodPath(%q) = %v, want ok=%v", "/"+tt.method, err, tt.ok)
		}
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		path string
		ok   bool
	}{
		{"/kar/v1/actor/T/x/call/m", true},
		{"/kar/v1/service/s/call/", true},
		{"/kar/v1/service/s/call/dir/", true},
		{"/kar/v1/actor/T/%2E%2E/call/m", true},
		{"/kar/v1/actor/T/..a/call/m", true},
		{"/kar/v1/actor/T/../call/m", false},
		{"/kar/v1/actor/T/./call/m", false},
		{"/kar/v1/service/s/call/..", false},
		{"/kar/v1/actor/T//call/m", false},
		{"//kar/v1", false},
	}
	for _, tt := range tests {
		if got := Canonical(tt.path); got != tt.ok {
			t.Errorf("Canonical(%q) = %v, want %v", tt.path, got, tt.ok)
		}
	}
}

func TestEscapeSegment(t *testing.T) {
	tests := []struct{ in, want string }{
		{"c1", "c1"},
		{".", "%2E"},
		{"..", "%2E%2E"},
		{"...", "..."},
		{"a/b", "a%2Fb"},
		{"a?b#c", "a%3Fb%23c"},
		{"%", "%25"},
	}
	for _, tt := range tests {
		got := EscapeSegment(tt.in)
		if got != tt.want {
			t.Errorf("EscapeSegment(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if back, err := url.PathUnescape(got); err != nil || back != tt.in {
			t.Errorf("%q does not decode back to %q: %q, %v", got, tt.in, back, err)
		}
	}
}
