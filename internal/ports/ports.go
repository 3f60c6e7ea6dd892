// Package ports picks loopback TCP ports for processes that a test or a
// benchmark starts and that bind the port themselves, later.
//
// A port the kernel picks (listen on :0) comes from its ephemeral range,
// the range every outgoing connection takes its local port from too, and a
// starting mesh makes hundreds of them: between the probe and the child's
// bind, one sometimes took the port ("address already in use"; a bench
// whose component could not listen waited 120 s for it to join). So ports
// are drawn from below that range, where no connection takes ports.
package ports

import (
	"errors"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
)

// avoid are ports a test may use on purpose (kar dev's defaults).
var avoid = map[int]bool{31093: true, 31379: true}

// Pick returns a loopback port below the ephemeral range that was free
// when probed, that claim (nil: any) accepts. claim lets a caller keep
// ports apart across processes (testenv's lock files); it is called before
// the probe and undone by unclaim when the probe fails.
func Pick(claim func(port int) bool, unclaim func(port int)) (int, error) {
	lo, hi := Range()
	for range 500 {
		if hi <= lo {
			break
		}
		port := lo + rand.IntN(hi-lo)
		if avoid[port] || claim != nil && !claim(port) {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			if unclaim != nil {
				unclaim(port)
			}
			continue
		}
		ln.Close()
		return port, nil
	}
	return 0, errors.New("no free loopback port below the ephemeral range")
}

// Range is where Pick draws ports: from 20000 up to the kernel's ephemeral
// range (empty when that range starts lower).
func Range() (lo, hi int) {
	lo, hi = 20000, 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil {
				hi = n
			}
		}
	}
	return lo, hi
}
