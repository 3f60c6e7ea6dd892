// Package tail keeps the end of what a process writes (its log), for an
// error message that says why it failed.
package tail

import (
	"bytes"
	"sync"
)

// Buffer keeps about the last Max bytes written to it; writes and String
// may come from different goroutines.
type Buffer struct {
	Max int

	mu  sync.Mutex
	buf bytes.Buffer
}

func (t *Buffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.Max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *Buffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.buf.String()
}
