package faults_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"text/tabwriter"
	"time"
)

// long is the shape of the long variants: about 2,500 requests per
// scenario at 200 calls/s, 24 in flight, through a 4 s fault.
var longShape = shape{Rate: 200, InFlight: 24, MS: 20, Warm: 400, After: 8 * time.Second, Down: 4 * time.Second,
	RedisDown: 3500 * time.Millisecond, Timeout: 30 * time.Second, Deliver: 60 * time.Second, Recover: 60 * time.Second}

// TestLong runs the whole fault matrix in its long shape and prints the
// figures (lost, duplicated, hung, recovery time) for the closing note:
//
//	go test ./test/faults -run TestLong -v -timeout 30m -args -faults.long
//
// Checks waiting for a fix are reported, not skipped (-faults.strict
// makes them failures); -faults.rounds repeats the matrix.
func TestLong(t *testing.T) {
	if !*long {
		t.Skip("the long variants run with -faults.long")
	}
	type row struct {
		name    string
		f       figures
		pending []string
	}
	var rows []row
	for round := 1; round <= *rounds; round++ {
		for _, sc := range scenarios() {
			t.Run(fmt.Sprintf("%s/%d", sc.name, round), func(t *testing.T) {
				c, f := sc.run(t, longShape)
				rows = append(rows, row{sc.name, f, c.pending})
			})
		}
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "scenario\tsent\taccepted\tanswered\trefused\tlost\tduplicated\thung\trecovery\tslowest\twaiting for a fix\t")
	for _, r := range rows {
		f := r.f
		fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.name, f.Sent, f.Accepted, f.Answered, f.Refused,
			f.Lost, f.Duplicated, f.Hung, f.Recovery.Round(time.Millisecond), f.Slowest.Round(time.Millisecond), pendingChecks(r.pending))
	}
	w.Flush()
}

// pendingChecks names the checks that waited for a fix ("check: fix
// (details)").
func pendingChecks(msgs []string) string {
	var out []string
	for _, m := range msgs {
		check, _, _ := strings.Cut(m, ":")
		out = append(out, check)
	}
	if len(out) == 0 {
		return "-"
	}
	return strings.Join(out, "; ")
}
