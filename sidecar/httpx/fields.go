package httpx

import (
	"net/http"
	"net/textproto"
	"slices"
)

// Fields is a message's header fields as a flat list of name, value,
// name, value... in order, names in canonical form
// (textproto.CanonicalMIMEHeaderKey), a name with several values once per
// value. It is how a call's headers travel through the mesh: a call has a
// handful of them, and an http.Header map cost every sidecar two
// allocations and 400 bytes for each message it read (issue 16), where
// Fields is one slice of strings that often alias the record read.
//
// The methods take canonical names, as http.Header's map index does.
type Fields []string

// Len is the number of fields.
func (f Fields) Len() int { return len(f) / 2 }

// Get is the first value of name, or "".
func (f Fields) Get(name string) string {
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] == name {
			return f[i+1]
		}
	}
	return ""
}

// Has reports whether name is present.
func (f Fields) Has(name string) bool {
	for i := 0; i+1 < len(f); i += 2 {
		if f[i] == name {
			return true
		}
	}
	return false
}

// Add appends a field.
func (f *Fields) Add(name, value string) { *f = append(*f, name, value) }

// Set replaces every value of name with value.
func (f *Fields) Set(name, value string) {
	f.Del(name)
	f.Add(name, value)
}

// Del removes every value of name. It edits f in place: a Fields shared
// with another message must be cloned first.
func (f *Fields) Del(name string) {
	out := (*f)[:0]
	for i := 0; i+1 < len(*f); i += 2 {
		if (*f)[i] != name {
			out = append(out, (*f)[i], (*f)[i+1])
		}
	}
	clear((*f)[len(out):])
	*f = out
}

// Clone is a copy that can be changed without changing f.
func (f Fields) Clone() Fields {
	if f == nil {
		return nil
	}
	return append(make(Fields, 0, len(f)), f...)
}

// Header is f as an http.Header, for the APIs that take one.
func (f Fields) Header() http.Header {
	h := make(http.Header, f.Len())
	for i := 0; i+1 < len(f); i += 2 {
		h[f[i]] = append(h[f[i]], f[i+1])
	}
	return h
}

// FieldsOf is h as Fields, without the names in drop, names made
// canonical. The order of names is the map's, so not stable.
func FieldsOf(h http.Header, drop ...string) Fields {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	f := make(Fields, 0, 2*n)
	for k, vs := range h {
		if slices.Contains(drop, k) {
			continue
		}
		k = textproto.CanonicalMIMEHeaderKey(k)
		for _, v := range vs {
			f = append(f, k, v)
		}
	}
	return f
}
