package main

// The outside harness: wrk, a load generator written in C (Debian's
// package), times kar's sequential service call and the floor's bare hop
// in each round, beside the bench's own client.
//
// Issue 16 holds the sequential call to its floor "once the bench and an
// outside harness agree": a bench that times kar and the floor with a
// client of its own could flatter kar by a slow client, or its floor by a
// quick one. wrk with one connection and one thread sends each request
// when the answer to the one before is in, as the bench's client does, so
// the two must find the same p50s when neither distorts them.

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// outsideTime is how long wrk runs for each figure of a round (whole
// seconds: wrk takes no less).
const outsideTime = time.Second

// wrkScript makes wrk call as the bench's client does: POST [1] as JSON.
const wrkScript = `wrk.method = "POST"
wrk.body = "[1]"
wrk.headers["Content-Type"] = "application/json"
`

// outsider runs wrk.
type outsider struct {
	wrk, script string
}

// newOutsider finds wrk on PATH and writes its script into dir.
func newOutsider(dir string) (*outsider, error) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		return nil, fmt.Errorf("wrk is not on PATH (Debian: apt-get install wrk)")
	}
	script := filepath.Join(dir, "kar-bench-post.lua")
	if err := os.WriteFile(script, []byte(wrkScript), 0o644); err != nil {
		return nil, err
	}
	return &outsider{wrk: wrk, script: script}, nil
}

// p50 is the median latency wrk finds calling url one call at a time.
func (o *outsider) p50(url string) (time.Duration, error) {
	secs := strconv.Itoa(int(outsideTime / time.Second))
	out, err := exec.Command(o.wrk, "-t1", "-c1", "-d"+secs+"s", "--latency", "-s", o.script, url).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("wrk: %w: %s", err, bytes.TrimSpace(out))
	}
	if bytes.Contains(out, []byte("Non-2xx")) {
		return 0, fmt.Errorf("wrk: calls failed: %s", bytes.TrimSpace(out))
	}
	return wrkMedian(out)
}

// wrkMedian reads the 50% line of wrk's latency distribution
// ("     50%  512.00us").
func wrkMedian(out []byte) (time.Duration, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "50%" {
			return wrkDuration(f[1])
		}
	}
	return 0, fmt.Errorf("wrk printed no median: %s", bytes.TrimSpace(out))
}

// wrkDuration parses wrk's durations: a number and us, ms, s, m or h.
func wrkDuration(s string) (time.Duration, error) {
	for _, u := range []struct {
		suffix string
		unit   time.Duration
	}{{"us", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}} {
		if v, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("wrk duration %q: %w", s, err)
			}
			return time.Duration(f * float64(u.unit)), nil
		}
	}
	return 0, fmt.Errorf("wrk duration %q: no unit", s)
}

// outsideRound times one round's figures with wrk: kar's sequential
// service call at serviceURL and the bare hop, to a bare server of its own.
func (e *env) outsideRound(serviceURL string) (service, hop time.Duration, err error) {
	if service, err = e.outside.p50(serviceURL); err != nil {
		return 0, 0, fmt.Errorf("service call: %w", err)
	}
	addr, _, stop, err := e.startServer("bareserver", standInEnv())
	if err != nil {
		return 0, 0, err
	}
	defer stop()
	if hop, err = e.outside.p50("http://" + addr + "/"); err != nil {
		return 0, 0, fmt.Errorf("bare hop: %w", err)
	}
	return service, hop, nil
}

// printOutside compares what wrk found in each round with what the
// bench's client found.
func printOutside(rs []seqRound) {
	var service, hop []float64
	for _, r := range rs {
		if r.outService == 0 {
			continue
		}
		service = append(service, float64(r.outService)/float64(percentile(r.service, 50)))
		if r.hop > 0 {
			hop = append(hop, float64(r.outHop)/float64(r.hop))
		}
	}
	if len(service) == 0 {
		fmt.Println("outside harness: no round timed")
		return
	}
	fmt.Printf("outside harness (wrk -t1 -c1, a C client, in each round after the bench's client): kar's sequential service call p50 %.2f× the bench client's (median of the rounds' ratios; range %.2f-%.2f×)",
		medianFloat(service), slices.Min(service), slices.Max(service))
	if len(hop) > 0 {
		fmt.Printf("; the bare hop %.2f× the floor's (range %.2f-%.2f×)", medianFloat(hop), slices.Min(hop), slices.Max(hop))
	}
	fmt.Println()
}
