package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"sync"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// kafkaCount is what the broker was asked for since it started: produce
// requests and the records in them, and fetch requests. Counted at the
// broker, it shows how well the sidecars batch: a load's records over its
// requests is the records each request carried.
type kafkaCount struct{ produces, records, fetches float64 }

func (k kafkaCount) sub(o kafkaCount) kafkaCount {
	return kafkaCount{k.produces - o.produces, k.records - o.records, k.fetches - o.fetches}
}

// print gives a load's Kafka requests per call, and the records each
// carried (a call is two records: its request and its response, each
// produced once and fetched once).
func (k kafkaCount) print(calls int64) {
	if calls == 0 || k.produces == 0 || k.fetches == 0 {
		return
	}
	n := float64(calls)
	fmt.Printf("  Kafka requests per call, counted at the broker: produce %.2f (%.1f records each), fetch %.2f (%.1f records each)\n",
		k.produces/n, k.records/k.produces, k.fetches/n, k.records/k.fetches)
}

// countKafka counts the produce and fetch requests the broker serves. The
// control functions only look: they leave every request unhandled, so
// kfake serves it as usual and keeps them for the next (as bench/scale's
// counter by API key does).
func countKafka(c *kfake.Cluster) func() kafkaCount {
	var mu sync.Mutex
	var n kafkaCount
	c.ControlKey(int16(kmsg.Produce), func(r kmsg.Request) (kmsg.Response, error, bool) {
		recs := 0
		for _, t := range r.(*kmsg.ProduceRequest).Topics {
			for _, p := range t.Partitions {
				recs += batchRecords(p.Records)
			}
		}
		mu.Lock()
		n.produces++
		n.records += float64(recs)
		mu.Unlock()
		return nil, nil, false
	})
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		mu.Lock()
		n.fetches++
		mu.Unlock()
		return nil, nil, false
	})
	return func() kafkaCount {
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}

// batchRecords counts the records of the whole v2 record batches in b:
// each batch's header gives its length at byte 8 and its count at byte 57.
func batchRecords(b []byte) int {
	n := 0
	for len(b) >= 61 {
		size := 12 + int(int32(binary.BigEndian.Uint32(b[8:12])))
		if size < 61 || size > len(b) {
			break
		}
		n += int(int32(binary.BigEndian.Uint32(b[57:61])))
		b = b[size:]
	}
	return n
}

// answerCounts answers each "kafka" line on stdin with the counts, until
// stdin closes (the bench's end).
func answerCounts(counts func() kafkaCount) {
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "kafka" {
			k := counts()
			fmt.Printf("%.0f %.0f %.0f\n", k.produces, k.records, k.fetches)
		}
	}
}

// kafkaCount asks the backend process for the broker's counts (zero when
// it does not answer).
func (e *env) kafkaCount() kafkaCount {
	var k kafkaCount
	if e.beIn == nil {
		return k
	}
	e.beMu.Lock()
	defer e.beMu.Unlock()
	if _, err := fmt.Fprintln(e.beIn, "kafka"); err != nil {
		return k
	}
	line, err := readLine(e.beOut)
	if err == nil {
		fmt.Sscan(line, &k.produces, &k.records, &k.fetches)
	}
	return k
}
