// Package wait holds the two small waits the sidecar's background loops
// share: a sleep that ends with its context, and draining queued wake-ups.
package wait

import (
	"context"
	"time"
)

// Sleep waits d or until ctx is done, reporting whether d elapsed.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Drain discards the values already queued on ch: a loop woken by several
// notices answers them all with one pass.
func Drain[T any](ch <-chan T) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}
