package main

import (
	"encoding/binary"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// batch encodes a v2 record batch header claiming n records, with body
// bytes of records after it, and its length set as a producer sets it.
func batch(n int32, body int) []byte {
	rb := kmsg.RecordBatch{Magic: 2, NumRecords: n, Records: make([]byte, body)}
	b := rb.AppendTo(nil)
	binary.BigEndian.PutUint32(b[8:12], uint32(len(b)-12))
	return b
}

func TestBatchRecords(t *testing.T) {
	two := append(batch(3, 40), batch(5, 10)...)
	for _, tc := range []struct {
		name string
		b    []byte
		want int
	}{
		{"none", nil, 0},
		{"one batch", batch(7, 100), 7},
		{"two batches", two, 8},
		{"a header cut short", batch(7, 0)[:40], 0},
		{"a second batch cut short", two[:len(two)-5], 3},
	} {
		if got := batchRecords(tc.b); got != tc.want {
			t.Errorf("%s: %d records, want %d", tc.name, got, tc.want)
		}
	}
}
