package sidecar

import (
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	const smaps = `00400000-00bfc000 r-xp 00000000 fe:00 1234                               /bin/kar
Size:               8176 kB
Rss:                4528 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me sd
00bfc000-01539000 r--p 007fc000 fe:00 1234                               /bin/kar
Rss:                7988 kB
Anonymous:             0 kB
01539000-015aa000 rw-p 01139000 fe:00 1234                               /bin/kar
Anonymous:           120 kB
015aa000-015b0000 r--p 0113a000 fe:00 1234                               /bin/kar
Anonymous:             8 kB
7f0000000000-7f0000010000 r-xp 00000000 fe:00 99                         /usr/lib/libc.so.6
Anonymous:             0 kB
7f0000020000-7f0000030000 rw-p 00000000 00:00 0
Anonymous:            64 kB
`
	tests := []struct {
		name, path string
		want       []mapping
	}{
		{"code and read-only data of the executable", "/bin/kar", []mapping{{0x400000, 0xbfc000}, {0xbfc000, 0x1539000}}},
		{"another file's", "/usr/lib/libc.so.6", []mapping{{0x7f0000000000, 0x7f0000010000}}},
		{"no such file", "/bin/other", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readOnlyMappings(strings.NewReader(smaps), tt.path)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %x, want %x", got, tt.want)
			}
		})
	}
	if _, err := readOnlyMappings(strings.NewReader("zz-00 r-xp 0 0:0 1 /bin/kar\n"), "/bin/kar"); err == nil {
		t.Error("a bad address range was not reported")
	}
}

// The test binary drops its own code pages and goes on running (its code
// faults back in as it runs): its resident pages of the executable shrink.
func TestDropStartupPages(t *testing.T) {
	before := exeRSS(t)
	if err := dropStartupPages(); err != nil {
		t.Fatal(err)
	}
	after := exeRSS(t)
	t.Logf("resident pages of the executable: %d kB before, %d kB after", before, after)
	if after >= before {
		t.Errorf("resident pages of the executable did not shrink: %d kB before, %d kB after", before, after)
	}
}

// exeRSS is the kB of the executable's mappings resident now.
func exeRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	total, inExe := 0, false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case !strings.HasSuffix(f[0], ":"): // a mapping's first line
			inExe = len(f) >= 6 && f[5] == exe
		case inExe && len(f) >= 2 && f[0] == "Rss:":
			n, _ := strconv.Atoi(f[1])
			total += n
		}
	}
	return total
}
