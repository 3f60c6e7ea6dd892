package httpx

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ErrBadName marks a name (actor type or id, method, reminder or
// subscription id, session, service, topic, state key) that kar refuses:
// requests carrying one are answered 400 before anything is stored or sent.
var ErrBadName = errors.New("bad name")

// CheckName checks a name taken from a request: it must be non-empty, valid
// UTF-8, and free of control characters (NUL included). Everything else is
// allowed: names are percent-encoded wherever kar puts them in a URL.
// what says what the name is ("actor id", "method") for the error message.
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("%w: the %s is empty", ErrBadName, what)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: the %s %q is not valid UTF-8", ErrBadName, what, s)
	}
	for _, c := range s {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("%w: the %s %q holds the control character %U", ErrBadName, what, s, c)
		}
	}
	return nil
}

// CheckMethod checks an actor method name: a name that is one path segment
// of the component's route POST /kar/impl/v1/actor/{type}/{id}/{method}.
// A "/" cannot be kept inside one segment by every web framework (some
// decode %2F before routing), and "." and ".." are dot segments that
// clients and proxies resolve, so those are refused rather than encoded.
func CheckMethod(method string) error {
	if err := CheckName("method", method); err != nil {
		return err
	}
	if method == "." || method == ".." {
		return fmt.Errorf("%w: the method %q is a dot segment, not a method name", ErrBadName, method)
	}
	if strings.Contains(method, "/") {
		return fmt.Errorf("%w: the method %q holds a \"/\": a method name is one path segment", ErrBadName, method)
	}
	return nil
}

// CheckMethodPath checks the "path" of a reminder, a subscription or a tail
// call: "/" and the method name.
func CheckMethodPath(path string) error {
	return CheckMethod(strings.TrimPrefix(path, "/"))
}

// Canonical reports whether an escaped URL path is free of dot segments
// ("." and "..") and empty segments ("//"). Go's ServeMux redirects such a
// path to its cleaned form, which can be another route than the one the
// caller wrote (/kar/v1/service/s/call/../../actor/...).
func Canonical(escapedPath string) bool {
	for seg := range strings.SplitSeq(escapedPath, "/") {
		if seg == "." || seg == ".." {
			return false
		}
	}
	return !strings.Contains(escapedPath, "//")
}

// EscapeSegment percent-encodes s as one URL path segment that every
// router decodes back to s: what url.PathEscape leaves alone, except that
// the dot segments "." and ".." become "%2E" and "%2E%2E" (which routers
// do not resolve as dot segments, and decode back to dots).
func EscapeSegment(s string) string {
	switch s {
	case ".":
		return "%2E"
	case "..":
		return "%2E%2E"
	}
	return url.PathEscape(s)
}
