package sidecar

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// dropStartupPages unmaps the pages of the kar executable's code and
// read-only data that are resident now, once the sidecar's start is over
// (startover.go).
//
// Those pages count in the process's RSS for as long as it lives, and most
// of them served only its start: every package's init (the CloudEvents,
// OpenTelemetry and Prometheus libraries, and the commands of `kar` a
// sidecar never runs), the flag and configuration parsing, the first
// connections. Measured on a loaded server sidecar, the executable
// accounted for 18.5 MiB of its 32 MiB RSS, and dropping its pages after
// the start took 4–5 MiB off for good: the pages the sidecar goes on using
// come back on their next access (a minor fault, from the page cache; no
// disk read, since the file stays cached), the others do not.
//
// Only private mappings of the executable that are not writable and hold no
// page the process wrote (smaps' Anonymous: 0) are dropped: their pages are
// the file's, so dropping them loses nothing.
func dropStartupPages() error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return err
	}
	defer f.Close()
	maps, err := readOnlyMappings(f, exe)
	if err != nil {
		return err
	}
	for _, m := range maps {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); e != 0 {
			return fmt.Errorf("madvise %#x-%#x: %w", m.start, m.end, e)
		}
	}
	return nil
}

// mapping is an address range of the process.
type mapping struct{ start, end uintptr }

// readOnlyMappings lists, from smaps, the private read-only mappings of
// the file path that hold no page written by the process.
func readOnlyMappings(smaps io.Reader, path string) ([]mapping, error) {
	var maps []mapping
	cur := -1 // index in maps of the mapping whose fields are being read
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.HasSuffix(fields[0], ":") { // a field of the mapping above
			if cur >= 0 && fields[0] == "Anonymous:" && (len(fields) < 2 || fields[1] != "0") {
				maps = append(maps[:cur], maps[cur+1:]...)
				cur = -1
			}
			continue
		}
		cur = -1
		if len(fields) < 6 || fields[5] != path || (fields[1] != "r-xp" && fields[1] != "r--p") {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		s, err1 := strconv.ParseUint(lo, 16, 64)
		e, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || e <= s {
			return nil, fmt.Errorf("smaps: bad address range %q", fields[0])
		}
		maps = append(maps, mapping{uintptr(s), uintptr(e)})
		cur = len(maps) - 1
	}
	return maps, sc.Err()
}
