package main

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// What /proc says about the benchmark's processes (Linux only).

// procCPU is the CPU seconds (user + system) pid has used.
func procCPU(pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+2:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// treeCPU is the CPU seconds of pid and its live descendants.
func treeCPU(pid int) float64 {
	t := procCPU(pid)
	for _, c := range children(pid) {
		t += treeCPU(c)
	}
	return t
}

// children lists the direct children of pid (each thread of a Go
// process lists the children it forked, so every thread is read).
func children(pid int) []int {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// Memory of a process in MiB: RSS counts every page it maps (the shared
// kar binary's text in each process), PSS divides shared pages among
// their users, so PSS summed over the sidecars is what they cost the host.
type Memory struct{ RSS, PSS float64 }

func procMemory(pid int) Memory {
	var m Memory
	f, err := os.Open(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 2 {
			continue
		}
		v, _ := strconv.ParseFloat(fs[1], 64)
		switch fs[0] {
		case "Rss:":
			m.RSS = v / 1024
		case "Pss:":
			m.PSS = v / 1024
		}
	}
	return m
}

// sockets counts pid's TCP connections to each of the given remote ports.
func sockets(pid int, ports ...int) map[int]int {
	out := map[int]int{}
	inodes := map[string]bool{}
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return out
	}
	for _, ent := range ents {
		l, err := os.Readlink(filepath.Join(dir, ent.Name()))
		if err != nil {
			continue
		}
		if in, ok := strings.CutPrefix(l, "socket:["); ok {
			inodes[strings.TrimSuffix(in, "]")] = true
		}
	}
	want := map[int]bool{}
	for _, p := range ports {
		want[p] = true
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // heading
		for sc.Scan() {
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || !inodes[fs[9]] {
				continue
			}
			_, hexPort, _ := strings.Cut(fs[2], ":")
			p, err := strconv.ParseInt(hexPort, 16, 32)
			if err == nil && want[int(p)] {
				out[int(p)]++
			}
		}
		f.Close()
	}
	return out
}
