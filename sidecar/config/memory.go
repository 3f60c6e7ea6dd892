package config

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// DefaultMemoryLimit is the Go runtime's soft memory limit of a sidecar
// when neither -memory_limit (KAR_MEMORY_LIMIT) nor Go's GOMEMLIMIT is set.
const DefaultMemoryLimit = 18 << 20

// NoMemoryLimit is what ParseMemoryLimit returns for "off".
const NoMemoryLimit = math.MaxInt64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"B", 1},
}

// ParseMemoryLimit reads a -memory_limit value: a size in bytes with an
// optional unit as GOMEMLIMIT takes it (B, KiB, MiB, GiB, TiB; also KB, MB,
// GB, TB), or "off" (or 0) for none.
func ParseMemoryLimit(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "off" || s == "0" {
		return NoMemoryLimit, nil
	}
	num, mult := s, int64(1)
	for _, u := range sizeUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f <= 0 || math.IsInf(f, 0) || f*float64(mult) >= math.MaxInt64 {
		return 0, fmt.Errorf("-memory_limit %q is not a size such as 24MiB, 1GiB or 50000000, or off", s)
	}
	v := int64(f * float64(mult))
	if v < 4<<20 {
		return 0, fmt.Errorf("-memory_limit %q is below 4MiB: a sidecar needs more (or give off for none)", s)
	}
	return v, nil
}
