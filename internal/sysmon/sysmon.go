// Package sysmon runs a kar sidecar's process with Go's sysmon thread kept
// from its deep sleep (GODEBUG=schedtrace=2147483647), and says how.
package sysmon

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// A sidecar runs with GODEBUG=schedtrace=2147483647, set by Exec
// before it starts, for what that setting does to Go's sysmon thread.
//
// sysmon wakes every 20 µs to 10 ms to take back processors stuck in
// system calls. Once every processor is idle it sleeps until woken, and the
// next system call wakes it (a futex call on that call's path) and starts
// it over at 20 µs sleeps, doubled only after 50 of them. A sidecar under
// load goes idle between bursts thousands of times a second, so its sysmon
// kept sleeping 20 µs at a time: 3,700–4,400 nanosleeps a second in each
// sidecar of the bench, each about 10 µs of CPU on this machine (a timer
// armed, a thread switched out and back), plus the futex calls. With
// schedtrace set, sysmon never takes that deep sleep (so that it can print
// the trace on time), so it is never woken and started over; it backs off
// to 10 ms as it does in a process that stays busy. Measured on the bench
// (docs/performance.md): a quarter of the threads put to sleep per call,
// and 14–22% less CPU per service call (2–11% per actor call).
//
// What it costs: an idle sidecar's sysmon wakes every 10 ms where it slept
// until the next timer (measured: 2.9 against 2.5 ms of CPU a second, of
// which the rest is the sidecar's own timers); a processor stuck in a
// system call is taken back after 10–20 ms rather than 20 µs, which the
// sidecar, whose system calls do not block, does not notice. The trace
// itself prints every 2^31 ms (24.8 days) of the machine's uptime: on a
// machine up longer than that, once when the sidecar starts.
//
// The runtime reads schedtrace only when the process starts, and the go
// command refuses it as a //go:debug directive. kar's builds
// (scripts/build.sh, which the Makefile, the Dockerfile and the scripts
// call) link it in as the runtime's default
// GODEBUG instead, with LinkerFlags: the runtime applies that default
// before the environment's GODEBUG, so a user's own schedtrace still
// wins. A kar built without it (a plain `go build`) runs itself again
// under the setting (Exec), which costs a second start of the process:
// 25 ms of a `kar run` on the machine of docs/performance.md.
const Setting = "schedtrace=2147483647"

// LinkerFlags are the -ldflags arguments that link Setting in as the
// runtime's default GODEBUG (the go command links a module's own default
// GODEBUG the same way; kar's module has none) and tell Exec so through
// linked (the build information does not keep -ldflags under -trimpath).
const LinkerFlags = "-X runtime.godebugDefault=" + Setting + " -X github.com/kar-runtime/kar/internal/sysmon.linked=" + Setting

// linked is Setting when LinkerFlags linked it in.
var linked string

// Exec replaces the process with itself under Setting, unless kar was
// linked with it or GODEBUG sets schedtrace already (the user's own choice
// is kept). In the process it started, it takes Setting out of GODEBUG
// again, so that the component and every other child get the GODEBUG kar
// was given. It returns only when it did not exec: nil, or why it could
// not.
func Exec() error {
	if linked == Setting {
		return nil // the runtime applied it at start
	}
	godebug := os.Getenv("GODEBUG")
	if rest, ours := withoutSetting(godebug, Setting); ours {
		// The runtime has read it; changing GODEBUG now changes only
		// what children see (schedtrace is read once, at start).
		if rest == "" {
			return os.Unsetenv("GODEBUG")
		}
		return os.Setenv("GODEBUG", rest)
	}
	if hasSetting(godebug, "schedtrace") {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("cannot find kar's executable to run it with %s: %w", Setting, err)
	}
	return fmt.Errorf("cannot run kar with %s: %w", Setting, syscall.Exec(exe, os.Args, Env(os.Environ())))
}

// Env is env with Setting added to its GODEBUG, unless that sets
// schedtrace already: how the bench runs its stand-ins for sidecars.
func Env(env []string) []string {
	var godebug string
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			godebug = v
		}
	}
	if hasSetting(godebug, "schedtrace") {
		return env
	}
	with := Setting
	if godebug != "" {
		with = godebug + "," + Setting
	}
	return append(withoutVar(env, "GODEBUG"), "GODEBUG="+with)
}

// withoutSetting removes the comma-separated setting from godebug, saying
// whether it was there.
func withoutSetting(godebug, setting string) (rest string, found bool) {
	var kept []string
	for _, s := range strings.Split(godebug, ",") {
		if s == setting {
			found = true
			continue
		}
		kept = append(kept, s)
	}
	return strings.Join(kept, ","), found
}

// hasSetting tells whether godebug sets key (to any value).
func hasSetting(godebug, key string) bool {
	for _, s := range strings.Split(godebug, ",") {
		if k, _, ok := strings.Cut(s, "="); ok && strings.TrimSpace(k) == key {
			return true
		}
	}
	return false
}

// withoutVar is env without the variable name.
func withoutVar(env []string, name string) []string {
	out := env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
