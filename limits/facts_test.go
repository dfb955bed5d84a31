package limits

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }

func fixedNoFile(soft, hard uint64) func() (uint64, uint64, error) {
	return func() (uint64, uint64, error) { return soft, hard, nil }
}

// procFS is a Linux root with every file Read looks at, the cgroup v2
// layout, and a limit on the parent cgroup smaller than the process's own.
func procFS() fstest.MapFS {
	return fstest.MapFS{
		"proc/sys/fs/nr_open":                                  file("1048576\n"),
		"proc/sys/fs/file-max":                                 file("9223372036854775807\n"),
		"proc/sys/fs/file-nr":                                  file("1568\t0\t9223372036854775807\n"),
		"proc/sys/net/core/somaxconn":                          file("4096\n"),
		"proc/sys/net/ipv4/tcp_max_syn_backlog":                file("512\n"),
		"proc/sys/net/ipv4/ip_local_port_range":                file("32768\t60999\n"),
		"proc/sys/net/ipv4/tcp_mem":                            file("93804\t125073\t187608\n"),
		"proc/sys/net/netfilter/nf_conntrack_max":              file("262144\n"),
		"proc/meminfo":                                         file("MemTotal:        8000000 kB\nMemFree:  100 kB\nMemAvailable:    6000000 kB\n"),
		"proc/self/cgroup":                                     file("0::/system.slice/reverb.service\n"),
		"proc/self/mountinfo":                                  file("28 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"),
		"sys/fs/cgroup/system.slice/reverb.service/memory.max": file("max\n"),
		"sys/fs/cgroup/system.slice/memory.max":                file("2147483648\n"),
	}
}

func TestReadFactsLinuxV2(t *testing.T) {
	f, err := readFacts(procFS(), fixedNoFile(1048576, 1048576))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  Value
		want Value
	}{
		{"NoFileSoft", f.NoFileSoft, known(1048576)},
		{"NoFileHard", f.NoFileHard, known(1048576)},
		{"NrOpen", f.NrOpen, known(1048576)},
		{"FileMax", f.FileMax, known(9223372036854775807)},
		{"FilesInUse", f.FilesInUse, known(1568)},
		{"Somaxconn", f.Somaxconn, known(4096)},
		{"TCPMaxSynBacklog", f.TCPMaxSynBacklog, known(512)},
		{"PortRangeLow", f.PortRangeLow, known(32768)},
		{"PortRangeHigh", f.PortRangeHigh, known(60999)},
		{"TCPMem[2]", f.TCPMem[2], known(187608)},
		{"ConntrackMax", f.ConntrackMax, known(262144)},
		{"MemTotal", f.MemTotal, known(8000000 * 1024)},
		{"MemAvailable", f.MemAvailable, known(6000000 * 1024)},
		{"CgroupMemoryLimit (parent's)", f.CgroupMemoryLimit, known(2 << 30)},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if f.CgroupMemoryFile != "/sys/fs/cgroup/system.slice/memory.max" {
		t.Errorf("CgroupMemoryFile = %q", f.CgroupMemoryFile)
	}
	if len(f.Notes) != 0 {
		t.Errorf("Notes = %q, want none", f.Notes)
	}
	if f.GOMAXPROCS < 1 || f.NumCPU < 1 || f.PageSize < 1 {
		t.Errorf("runtime facts %d %d %d", f.GOMAXPROCS, f.NumCPU, f.PageSize)
	}
}

func TestReadFactsCgroup(t *testing.T) {
	hybridMounts := "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	tests := []struct {
		name     string
		files    fstest.MapFS
		want     Value
		wantFile string
	}{
		{"v2 max everywhere", fstest.MapFS{
			"proc/self/cgroup":           file("0::/a\n"),
			"proc/self/mountinfo":        file("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/a/memory.max": file("max\n"),
		}, known(Unlimited), "/sys/fs/cgroup/a/memory.max"},
		{"v2 own number", fstest.MapFS{
			"proc/self/cgroup":           file("0::/a\n"),
			"proc/self/mountinfo":        file("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/a/memory.max": file("1073741824\n"),
			"sys/fs/cgroup/memory.max":   file("max\n"),
		}, known(1 << 30), "/sys/fs/cgroup/a/memory.max"},
		{"v2 without mountinfo uses /sys/fs/cgroup", fstest.MapFS{
			"proc/self/cgroup":           file("0::/a\n"),
			"sys/fs/cgroup/a/memory.max": file("1073741824\n"),
		}, known(1 << 30), "/sys/fs/cgroup/a/memory.max"},
		{"v2 namespaced root", fstest.MapFS{
			"proc/self/cgroup":         file("0::/\n"),
			"proc/self/mountinfo":      file("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
			"sys/fs/cgroup/memory.max": file("268435456\n"),
		}, known(256 << 20), "/sys/fs/cgroup/memory.max"},
		{"hybrid: v1 unlimited (this machine's kind)", fstest.MapFS{
			"proc/self/cgroup":    file("4:memory:/process_api/12fa\n0::/\n"),
			"proc/self/mountinfo": file(hybridMounts),
			"sys/fs/cgroup/memory/process_api/12fa/memory.limit_in_bytes": file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/process_api/memory.limit_in_bytes":      file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/memory.limit_in_bytes":                  file("9223372036854771712\n"),
		}, known(Unlimited), "/sys/fs/cgroup/memory/process_api/12fa/memory.limit_in_bytes"},
		{"v1 limit on a parent", fstest.MapFS{
			"proc/self/cgroup":    file("4:memory:/docker/abc\n"),
			"proc/self/mountinfo": file(hybridMounts),
			"sys/fs/cgroup/memory/docker/abc/memory.limit_in_bytes": file("9223372036854771712\n"),
			"sys/fs/cgroup/memory/docker/memory.limit_in_bytes":     file("536870912\n"),
		}, known(512 << 20), "/sys/fs/cgroup/memory/docker/memory.limit_in_bytes"},
		{"v1 and v2 both limit: smaller wins", fstest.MapFS{
			"proc/self/cgroup":                             file("4:memory:/x\n0::/y\n"),
			"proc/self/mountinfo":                          file(hybridMounts),
			"sys/fs/cgroup/memory/x/memory.limit_in_bytes": file("536870912\n"),
			"sys/fs/cgroup/unified/y/memory.max":           file("268435456\n"),
		}, known(256 << 20), "/sys/fs/cgroup/unified/y/memory.max"},
		{"no controller files", fstest.MapFS{
			"proc/self/cgroup":    file("0::/\n"),
			"proc/self/mountinfo": file("1 0 0:1 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n"),
		}, Value{}, ""},
		{"no /proc/self/cgroup", fstest.MapFS{}, Value{}, ""},
	}
	for _, tt := range tests {
		f, err := readFacts(tt.files, fixedNoFile(1024, 4096))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if f.CgroupMemoryLimit != tt.want || f.CgroupMemoryFile != tt.wantFile {
			t.Errorf("%s: limit %v from %q, want %v from %q (notes %q)",
				tt.name, f.CgroupMemoryLimit, f.CgroupMemoryFile, tt.want, tt.wantFile, f.Notes)
		}
	}
}

func TestReadFactsMissingAndMalformed(t *testing.T) {
	// Nothing there: everything unknown, no error, no notes.
	f, err := readFacts(fstest.MapFS{}, fixedNoFile(1024, 4096))
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]Value{
		"NrOpen": f.NrOpen, "FileMax": f.FileMax, "FilesInUse": f.FilesInUse, "Somaxconn": f.Somaxconn,
		"PortRangeLow": f.PortRangeLow, "TCPMem[0]": f.TCPMem[0], "ConntrackMax": f.ConntrackMax,
		"MemAvailable": f.MemAvailable, "CgroupMemoryLimit": f.CgroupMemoryLimit,
	} {
		if v.Known {
			t.Errorf("%s = %v, want unknown", name, v)
		}
	}
	if len(f.Notes) != 0 {
		t.Errorf("Notes = %q, want none for missing files", f.Notes)
	}

	// Malformed files: unknown, with a note naming the file.
	bad := fstest.MapFS{
		"proc/sys/fs/nr_open":                   file("lots\n"),
		"proc/sys/net/ipv4/ip_local_port_range": file("9 1\n"),
		"proc/sys/fs/file-nr":                   file("1 2\n"),
		"proc/sys/net/ipv4/tcp_mem":             file("1\n"),
		"proc/self/cgroup":                      file("nonsense\n"),
	}
	f, err = readFacts(bad, fixedNoFile(1024, 4096))
	if err != nil {
		t.Fatal(err)
	}
	if f.NrOpen.Known || f.PortRangeLow.Known || f.FilesInUse.Known || f.TCPMem[0].Known {
		t.Errorf("malformed values read as known: %+v", f)
	}
	notes := strings.Join(f.Notes, "\n")
	for _, want := range []string{"/proc/sys/fs/nr_open", "ip_local_port_range", "file-nr", "tcp_mem", "/proc/self/cgroup"} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes %q do not mention %s", notes, want)
		}
	}
}

func TestReadFactsRlimit(t *testing.T) {
	f, err := readFacts(fstest.MapFS{}, func() (uint64, uint64, error) { return 0, 0, errors.ErrUnsupported })
	if err != nil || f.NoFileSoft.Known || len(f.Notes) != 1 {
		t.Errorf("unsupported: err %v, soft %v, notes %q", err, f.NoFileSoft, f.Notes)
	}
	f, err = readFacts(procFS(), func() (uint64, uint64, error) { return 0, 0, os.ErrPermission })
	if err == nil || f == nil || f.NoFileSoft.Known || !f.NrOpen.Known {
		t.Errorf("failing getrlimit: err %v, facts %+v; want an error and the other facts", err, f)
	}
}

func TestValue(t *testing.T) {
	tests := []struct {
		v         Value
		str, json string
		asInt     int
	}{
		{Value{}, "unknown", "null", -1},
		{known(20000), "20000", "20000", 20000},
		{known(Unlimited), "unlimited", `"unlimited"`, int(^uint(0) >> 1)},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.v)
		if err != nil || string(b) != tt.json || tt.v.String() != tt.str || tt.v.Int() != tt.asInt {
			t.Errorf("%+v: json %s %v, String %q, Int %d", tt.v, b, err, tt.v.String(), tt.v.Int())
		}
		var back Value
		if err := json.Unmarshal(b, &back); err != nil || back != tt.v {
			t.Errorf("%+v: round trip = %+v, %v", tt.v, back, err)
		}
	}
}
