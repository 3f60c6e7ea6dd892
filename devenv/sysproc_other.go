//go:build !linux

package devenv

import "syscall"

// childSysProcAttr puts redis-server in its own process group, so a Ctrl-C
// at the terminal reaches only `kar dev`, which then stops it in order.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
