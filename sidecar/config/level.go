package config

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
)

// LevelFatal is KAR's "fatal" verbosity: only what stops the process.
// slog has no such level; kar never logs above error, so this silences the log.
const LevelFatal = slog.LevelError + 4

// ParseLevel reads a -v / KAR_VERBOSE value. Besides kar's names it takes
// KAR's: "fatal", "warning" and its numbers (0 fatal, 1 error, 2 warning,
// 3 info, 4 and more debug), and true/false, which is how kar-sdk reads
// KAR_VERBOSE (true logs every request): true is info, false the default.
func ParseLevel(s string) (slog.Level, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "", "error", "false":
		return slog.LevelError, nil
	case "fatal":
		return LevelFatal, nil
	case "warn", "warning":
		return slog.LevelWarn, nil
	case "info", "true":
		return slog.LevelInfo, nil
	case "debug":
		return slog.LevelDebug, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("-v %q: want fatal, error, warn, info, debug, a number 0-4 (as KAR) or true/false", s)
	}
	switch {
	case n <= 0:
		return LevelFatal, nil
	case n == 1:
		return slog.LevelError, nil
	case n == 2:
		return slog.LevelWarn, nil
	case n == 3:
		return slog.LevelInfo, nil
	default:
		return slog.LevelDebug, nil
	}
}
