package limits

import (
	"reflect"
	"testing"
)

func TestParseUint(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"1048576\n", 1048576, false},
		{"  4096  ", 4096, false},
		{"0\n", 0, false},
		{"18446744073709551615\n", Unlimited, false},
		{"", 0, true},
		{"-1\n", 0, true},
		{"12 34\n", 0, true},
		{"max\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseUint([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseUint(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseFileNr(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"615\t0\t2466174\n", 615, false},
		{"2000 500 100000\n", 1500, false}, // Linux 2.4 still counted free handles
		{"615\t0\n", 0, true},
		{"10 20 30\n", 0, true}, // more free than allocated
		{"a b c\n", 0, true},
	}
	for _, tt := range tests {
		got, err := parseFileNr([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseFileNr(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in      string
		lo, hi  uint64
		wantErr bool
	}{
		{"32768\t60999\n", 32768, 60999, false},
		{"1024 65535\n", 1024, 65535, false},
		{"60999 32768\n", 0, 0, true},
		{"1024 70000\n", 0, 0, true},
		{"1024\n", 0, 0, true},
		{"1024 65535 1\n", 0, 0, true},
	}
	for _, tt := range tests {
		lo, hi, err := parsePortRange([]byte(tt.in))
		if (err != nil) != tt.wantErr || lo != tt.lo || hi != tt.hi {
			t.Errorf("parsePortRange(%q) = %d, %d, %v; want %d, %d, err %v", tt.in, lo, hi, err, tt.lo, tt.hi, tt.wantErr)
		}
	}
}

func TestParseTCPMem(t *testing.T) {
	got, err := parseTCPMem([]byte("287898\t383866\t575796\n"))
	if err != nil || got != [3]uint64{287898, 383866, 575796} {
		t.Errorf("parseTCPMem = %v, %v", got, err)
	}
	for _, bad := range []string{"1 2\n", "1 2 x\n", ""} {
		if _, err := parseTCPMem([]byte(bad)); err == nil {
			t.Errorf("parseTCPMem(%q): no error", bad)
		}
	}
}

func TestParseMeminfo(t *testing.T) {
	in := "MemTotal:       24683656 kB\n" +
		"MemFree:        23478688 kB\n" +
		"MemAvailable:   24197864 kB\n" +
		"HugePages_Total:       0\n" +
		"Weird: 12 MB\n" +
		"garbage line\n" +
		"Bad:  x kB\n"
	got := parseMeminfo([]byte(in))
	want := map[string]uint64{
		"MemTotal":        24683656 * 1024,
		"MemFree":         23478688 * 1024,
		"MemAvailable":    24197864 * 1024,
		"HugePages_Total": 0,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseMeminfo = %v, want %v", got, want)
	}
}

func TestParseCgroupMemoryLimit(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr bool
	}{
		{"max\n", Unlimited, false},                           // v2, no limit
		{"536870912\n", 536870912, false},                     // v2 or v1, 512 MiB
		{"9223372036854771712\n", Unlimited, false},           // v1, no limit (LONG_MAX page-aligned)
		{"9223372036854775807\n", Unlimited, false},           // v1, no limit (LONG_MAX)
		{"4611686018427387903\n", 4611686018427387903, false}, // just below the v1 threshold
		{"-1\n", Unlimited, false},
		{"lots\n", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		got, err := parseCgroupMemoryLimit([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("parseCgroupMemoryLimit(%q) = %d, %v; want %d, err %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseProcCgroup(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procCgroup
		wantErr bool
	}{
		{"v2 only", "0::/system.slice/reverb.service\n", procCgroup{v2: "/system.slice/reverb.service"}, false},
		{"hybrid", "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/12fa\n1:cpu,cpuacct:/\n0::/\n",
			procCgroup{v2: "/", v1Memory: "/process_api/12fa"}, false},
		{"v1 combined controllers", "5:cpuacct,memory,cpu:/docker/abc\n", procCgroup{v1Memory: "/docker/abc"}, false},
		{"v1 memory-like name", "4:memoryx:/a\n", procCgroup{}, false},
		{"empty", "", procCgroup{}, true},
		{"malformed", "0:/nopath\n", procCgroup{}, true},
	}
	for _, tt := range tests {
		got, err := parseProcCgroup([]byte(tt.in))
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("%s: parseProcCgroup = %+v, %v; want %+v, err %v", tt.name, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestParseMountinfo(t *testing.T) {
	hybrid := "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n" +
		"32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n" +
		"35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n" +
		"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
	v2, v1 := parseMountinfo([]byte(hybrid))
	if v2 == nil || *v2 != (cgroupMount{root: "/", point: "/sys/fs/cgroup/unified"}) {
		t.Errorf("hybrid v2 = %+v", v2)
	}
	if v1 == nil || *v1 != (cgroupMount{root: "/", point: "/sys/fs/cgroup/memory"}) {
		t.Errorf("hybrid v1 = %+v", v1)
	}

	unified := "25 30 0:23 / /sys rw - sysfs sysfs rw\n" +
		"28 25 0:26 /../.. /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n" +
		"99 25 0:27 /a /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n"
	v2, v1 = parseMountinfo([]byte(unified))
	if v2 == nil || *v2 != (cgroupMount{root: "/../..", point: "/sys/fs/cgroup"}) {
		t.Errorf("unified v2 = %+v (the first cgroup2 mount wins)", v2)
	}
	if v1 != nil {
		t.Errorf("unified v1 = %+v, want none", v1)
	}
	if got := unescapeMount(`/mnt/my\040cg`); got != "/mnt/my cg" {
		t.Errorf("unescapeMount = %q", got)
	}
	if got := unescapeMount(`/trailing\04`); got != `/trailing\04` {
		t.Errorf("unescapeMount of a short escape = %q", got)
	}
}

func TestCgroupDir(t *testing.T) {
	tests := []struct {
		root, point, path, want string
	}{
		{"/", "/sys/fs/cgroup", "/system.slice/reverb.service", "/sys/fs/cgroup/system.slice/reverb.service"},
		{"/", "/sys/fs/cgroup", "/", "/sys/fs/cgroup"},
		{"/docker/abc", "/sys/fs/cgroup/memory", "/docker/abc", "/sys/fs/cgroup/memory"},
		{"/docker/abc", "/sys/fs/cgroup/memory", "/docker/abc/child", "/sys/fs/cgroup/memory/child"},
		{"/docker/abc", "/sys/fs/cgroup/memory", "/other", "/sys/fs/cgroup/memory"},
		{"/", "/sys/fs/cgroup", "/../../escape", "/sys/fs/cgroup/escape"},
	}
	for _, tt := range tests {
		got := cgroupDir(&cgroupMount{root: tt.root, point: tt.point}, tt.path)
		if got != tt.want {
			t.Errorf("cgroupDir(root %s, point %s, %s) = %s, want %s", tt.root, tt.point, tt.path, got, tt.want)
		}
	}
}
