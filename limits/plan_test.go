package limits

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// linuxFacts is a roomy Linux machine with RLIMIT_NOFILE soft = hard = nofile.
func linuxFacts(nofile uint64) *Facts {
	return &Facts{
		OS:                "linux",
		NoFileSoft:        known(nofile),
		NoFileHard:        known(nofile),
		NrOpen:            known(1 << 20),
		FileMax:           known(9223372036854775807),
		FilesInUse:        known(1000),
		Somaxconn:         known(4096),
		TCPMaxSynBacklog:  known(8192),
		PortRangeLow:      known(1024),
		PortRangeHigh:     known(65535),
		TCPMem:            [3]Value{known(1 << 20), known(3 << 19), known(1 << 21)}, // max 8 GiB
		MemTotal:          known(64 << 30),
		MemAvailable:      known(60 << 30),
		CgroupMemoryLimit: known(Unlimited),
		PageSize:          4096,
		GOMAXPROCS:        8,
		NumCPU:            8,
	}
}

func find(r Report, check string) *Finding {
	for i := range r.Findings {
		if r.Findings[i].Check == check {
			return &r.Findings[i]
		}
	}
	return nil
}

// fixValue returns the number in the first fix line that starts with prefix.
func fixValue(t *testing.T, f *Finding, prefix string) int {
	t.Helper()
	for _, fx := range f.Fixes {
		for _, l := range fx.Lines {
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				n, err := strconv.Atoi(strings.TrimSpace(rest))
				if err != nil {
					t.Fatalf("fix line %q: %v", l, err)
				}
				return n
			}
		}
	}
	t.Fatalf("no fix line starting with %q in %+v", prefix, f.Fixes)
	return 0
}

func TestFDReserveAndBudget(t *testing.T) {
	tests := []struct {
		soft    uint64
		reserve int
		budget  int
	}{
		{0, 64, 0},
		{50, 64, 0},
		{1024, 64, 960},
		{6400, 64, 6336},
		{20000, 200, 19800},
		{1 << 20, 10485, 1048576 - 10485},
		{Unlimited, min(Value{N: Unlimited / 100, Known: true}.Int(), math.MaxInt),
			math.MaxInt - min(Value{N: Unlimited / 100, Known: true}.Int(), math.MaxInt)},
	}
	for _, tt := range tests {
		if got := FDReserve(tt.soft); got != tt.reserve {
			t.Errorf("FDReserve(%d) = %d, want %d", tt.soft, got, tt.reserve)
		}
		f := &Facts{NoFileSoft: known(tt.soft)}
		if got := FDBudget(f); got != tt.budget {
			t.Errorf("FDBudget(soft %d) = %d, want %d", tt.soft, got, tt.budget)
		}
	}
	if got := FDBudget(&Facts{}); got != -1 {
		t.Errorf("FDBudget(unknown) = %d, want -1", got)
	}
	if got := FDBudget(nil); got != -1 {
		t.Errorf("FDBudget(nil) = %d, want -1", got)
	}
}

func TestNoFileFor(t *testing.T) {
	for _, n := range []int{0, 1, 100, 6336, 6337, 19800, 50000, 99999, 1000000, 1038090, 1038091} {
		lim := noFileFor(n, 0)
		if b := fdBudget(uint64(lim), FDReserve(uint64(lim))); b < n {
			t.Errorf("noFileFor(%d) = %d has budget %d", n, lim, b)
		}
		if b := fdBudget(uint64(lim-1), FDReserve(uint64(lim-1))); n > 0 && b >= n {
			t.Errorf("noFileFor(%d) = %d is not the smallest: %d has budget %d", n, lim, lim-1, b)
		}
	}
	if got := noFileFor(1000, 500); got != 1500 {
		t.Errorf("noFileFor with a fixed reserve = %d, want 1500", got)
	}
}

func TestPlanNoFile(t *testing.T) {
	t.Run("20000 soft limit, max_connections 50000: error", func(t *testing.T) {
		r := Plan(linuxFacts(20000), Want{MaxConnections: 50000})
		if r.Target != 50000 || r.FDBudget != 19800 || r.Capacity != 19800 {
			t.Errorf("target %d budget %d capacity %d", r.Target, r.FDBudget, r.Capacity)
		}
		f := find(r, "nofile")
		if f == nil || f.Severity != Error || r.Worst() != Error {
			t.Fatalf("nofile finding %+v, worst %v", f, r.Worst())
		}
		n := fixValue(t, f, "LimitNOFILE=")
		if n < 50000+FDReserve(uint64(n)) {
			t.Errorf("LimitNOFILE=%d does not hold 50000 connections plus the reserve %d", n, FDReserve(uint64(n)))
		}
		if m := fixValue(t, f, "minfds="); m != n {
			t.Errorf("minfds=%d, LimitNOFILE=%d", m, n)
		}
		if s := fixValue(t, f, "* soft nofile "); s != n {
			t.Errorf("soft nofile %d, want %d", s, n)
		}
		if h := fixValue(t, f, "* hard nofile "); h != n {
			t.Errorf("hard nofile %d, want %d", h, n)
		}
		if !strings.Contains(f.Message, "at least 50505") {
			t.Errorf("message %q should give the exact minimum 50505", f.Message)
		}
		if strings.Contains(fmt.Sprint(f.Fixes), "fs.nr_open") {
			t.Errorf("nr_open 1048576 is enough, yet fixes %v raise it", f.Fixes)
		}
	})
	t.Run("1M limit: ok", func(t *testing.T) {
		r := Plan(linuxFacts(1<<20), Want{MaxConnections: 500000})
		if r.Worst() != OK {
			t.Errorf("worst %v, findings %+v", r.Worst(), r.Findings)
		}
		if f := find(r, "nofile"); f == nil || f.Severity != OK || len(f.Fixes) != 0 {
			t.Errorf("nofile finding %+v", f)
		}
	})
	t.Run("beyond fs.nr_open: raise it first", func(t *testing.T) {
		f := linuxFacts(1 << 20)
		f.MemAvailable = known(1 << 40)
		r := Plan(f, Want{MaxConnections: 1500000})
		fd := find(r, "nofile")
		if fd == nil || fd.Severity != Error {
			t.Fatalf("nofile finding %+v", fd)
		}
		n := fixValue(t, fd, "LimitNOFILE=")
		if nr := fixValue(t, fd, "fs.nr_open = "); nr < n {
			t.Errorf("fs.nr_open = %d below LimitNOFILE=%d", nr, n)
		}
		if !strings.HasPrefix(fd.Fixes[0].Where, "sysctl") {
			t.Errorf("sysctl fix should come first: %+v", fd.Fixes)
		}
	})
	t.Run("no max, small budget: warn", func(t *testing.T) {
		r := Plan(linuxFacts(1024), Want{})
		f := find(r, "nofile")
		if f == nil || f.Severity != Warn || r.Worst() != Warn {
			t.Fatalf("nofile finding %+v, worst %v", f, r.Worst())
		}
		if n := fixValue(t, f, "LimitNOFILE="); n != RecommendedNoFile {
			t.Errorf("LimitNOFILE=%d, want %d", n, RecommendedNoFile)
		}
	})
	t.Run("no max, budget above the threshold: ok", func(t *testing.T) {
		r := Plan(linuxFacts(20000), Want{})
		if f := find(r, "nofile"); f == nil || f.Severity != OK {
			t.Errorf("nofile finding %+v", f)
		}
	})
	t.Run("exactly at the budget: ok; one more: error", func(t *testing.T) {
		if f := find(Plan(linuxFacts(20000), Want{MaxConnections: 19800}), "nofile"); f.Severity != OK {
			t.Errorf("19800 of 19800: %+v", f)
		}
		if f := find(Plan(linuxFacts(20000), Want{MaxConnections: 19801}), "nofile"); f.Severity != Error {
			t.Errorf("19801 of 19800: %+v", f)
		}
	})
	t.Run("explicit reserve", func(t *testing.T) {
		r := Plan(linuxFacts(20000), Want{MaxConnections: 19000, Reserve: 1500})
		if r.FDBudget != 18500 {
			t.Errorf("budget %d, want 18500", r.FDBudget)
		}
		f := find(r, "nofile")
		if f.Severity != Error || !strings.Contains(f.Message, "at least 20500") {
			t.Errorf("nofile finding %+v", f)
		}
	})
	t.Run("unknown limit", func(t *testing.T) {
		f := linuxFacts(0)
		f.NoFileSoft, f.NoFileHard = Value{}, Value{}
		r := Plan(f, Want{MaxConnections: 1000})
		if r.FDBudget != -1 || find(r, "nofile").Severity != Warn {
			t.Errorf("budget %d, finding %+v", r.FDBudget, find(r, "nofile"))
		}
		if r.Capacity != r.MemoryCapacity {
			t.Errorf("capacity %d should fall back to memory capacity %d", r.Capacity, r.MemoryCapacity)
		}
	})
}

func TestPlanTarget(t *testing.T) {
	tests := []struct {
		want   Want
		target int
	}{
		{Want{}, 0},
		{Want{MaxConnections: 5000}, 5000},
		{Want{AppMaxConnections: 3000}, 3000},
		{Want{MaxConnections: 5000, AppMaxConnections: 3000}, 3000},
		{Want{MaxConnections: 2000, AppMaxConnections: 3000}, 2000},
	}
	for _, tt := range tests {
		if got := Plan(linuxFacts(1<<20), tt.want).Target; got != tt.target {
			t.Errorf("%+v: target %d, want %d", tt.want, got, tt.target)
		}
	}
}

func TestPlanMemory(t *testing.T) {
	per := DefaultUserBytesPerConn + DefaultKernelBytesPerConn
	t.Run("cgroup limit below MemAvailable binds", func(t *testing.T) {
		f := linuxFacts(1 << 20)
		f.CgroupMemoryLimit = known(1 << 30)
		r := Plan(f, Want{MaxConnections: 200000})
		if r.MemoryBytes != known(1<<30) || r.MemoryCapacity != (1<<30)/per {
			t.Errorf("memory %v capacity %d, want %d", r.MemoryBytes, r.MemoryCapacity, (1<<30)/per)
		}
		if r.Capacity != r.MemoryCapacity {
			t.Errorf("capacity %d, want the memory capacity %d", r.Capacity, r.MemoryCapacity)
		}
		fd := find(r, "memory")
		if fd == nil || fd.Severity != Error {
			t.Fatalf("memory finding %+v", fd)
		}
		if n := fixValue(t, fd, "max_connections = "); n != r.MemoryCapacity {
			t.Errorf("suggested max_connections %d, want %d", n, r.MemoryCapacity)
		}
		if n := fixValue(t, fd, "MemoryMax="); n < 200000*per {
			t.Errorf("MemoryMax=%d below the %d needed", n, 200000*per)
		}
	})
	t.Run("MemAvailable binds: no MemoryMax fix", func(t *testing.T) {
		f := linuxFacts(1 << 20)
		f.MemAvailable = known(1 << 30)
		r := Plan(f, Want{MaxConnections: 200000})
		fd := find(r, "memory")
		if fd.Severity != Error || strings.Contains(fmt.Sprint(fd.Fixes), "MemoryMax") {
			t.Errorf("memory finding %+v", fd)
		}
	})
	t.Run("cgroup max is no limit", func(t *testing.T) {
		r := Plan(linuxFacts(1<<20), Want{})
		if r.MemoryBytes != known(60<<30) || uint64(r.MemoryCapacity) != uint64(60<<30)/uint64(per) {
			t.Errorf("memory %v capacity %d", r.MemoryBytes, r.MemoryCapacity)
		}
	})
	t.Run("no max, memory below fd budget: warn", func(t *testing.T) {
		f := linuxFacts(1 << 20)
		f.MemAvailable = known(1 << 30)
		r := Plan(f, Want{})
		fd := find(r, "memory")
		if fd.Severity != Warn || r.Capacity != (1<<30)/per {
			t.Fatalf("memory finding %+v, capacity %d", fd, r.Capacity)
		}
		if n := fixValue(t, fd, "max_connections = "); n != r.Capacity {
			t.Errorf("suggested max_connections %d, want %d", n, r.Capacity)
		}
	})
	t.Run("custom per-connection costs", func(t *testing.T) {
		f := linuxFacts(1 << 20)
		f.MemAvailable = known(10 << 20)
		r := Plan(f, Want{UserBytesPerConn: 4096, KernelBytesPerConn: 6144})
		if r.MemoryCapacity != 1024 {
			t.Errorf("memory capacity %d, want 1024", r.MemoryCapacity)
		}
	})
	t.Run("unknown memory", func(t *testing.T) {
		f := linuxFacts(20000)
		f.MemAvailable, f.CgroupMemoryLimit = Value{}, Value{}
		r := Plan(f, Want{})
		if r.MemoryCapacity != -1 || r.Capacity != 19800 || find(r, "memory").Severity != Warn {
			t.Errorf("memory capacity %d capacity %d finding %+v", r.MemoryCapacity, r.Capacity, find(r, "memory"))
		}
	})
}

func TestPlanSysctls(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Facts)
		want   Want
		check  string
		sev    Severity
		fix    string // a fix line, "" for none
	}{
		{"somaxconn 128", func(f *Facts) { f.Somaxconn = known(128) }, Want{}, "somaxconn", Warn, "net.core.somaxconn = 4096"},
		{"somaxconn 4096", func(f *Facts) {}, Want{}, "somaxconn", OK, ""},
		{"syn backlog 1024", func(f *Facts) { f.TCPMaxSynBacklog = known(1024) }, Want{}, "syn-backlog", Warn, "net.ipv4.tcp_max_syn_backlog = 8192"},
		{"debian ports, 50000 planned", func(f *Facts) { f.PortRangeLow, f.PortRangeHigh = known(32768), known(60999) },
			Want{MaxConnections: 50000}, "port-range", Warn, "net.ipv4.ip_local_port_range = 1024 65535"},
		{"debian ports, 20000 planned", func(f *Facts) { f.PortRangeLow, f.PortRangeHigh = known(32768), known(60999) },
			Want{MaxConnections: 20000}, "port-range", OK, ""},
		{"widest ports, 500000 planned: nothing to widen", func(f *Facts) {},
			Want{MaxConnections: 500000}, "port-range", OK, ""},
		{"conntrack small", func(f *Facts) { f.ConntrackMax = known(65536) }, Want{MaxConnections: 100000}, "conntrack", Warn, "net.netfilter.nf_conntrack_max = 262144"},
		{"conntrack big", func(f *Facts) { f.ConntrackMax = known(1 << 21) }, Want{MaxConnections: 100000}, "conntrack", OK, ""},
		{"file-max too low", func(f *Facts) { f.FileMax = known(50000) }, Want{MaxConnections: 100000}, "file-max", Error, "fs.file-max = 221970"}, // 2 x (100000 + reserve 10485) + 1000 in use
		{"tcp_mem small", func(f *Facts) { f.TCPMem[2] = known(1000) }, Want{MaxConnections: 100000}, "tcp-mem", Warn, "net.ipv4.tcp_mem = 50000 75000 100000"},
		{"loops above GOMAXPROCS", func(f *Facts) {}, Want{Loops: 16}, "loops", Warn, "loops = 0  # one per CPU"},
	}
	for _, tt := range tests {
		f := linuxFacts(1 << 20)
		tt.mutate(f)
		r := Plan(f, tt.want)
		fd := find(r, tt.check)
		if fd == nil {
			t.Errorf("%s: no %s finding", tt.name, tt.check)
			continue
		}
		if fd.Severity != tt.sev {
			t.Errorf("%s: severity %v, want %v (%s)", tt.name, fd.Severity, tt.sev, fd.Message)
		}
		lines := fmt.Sprint(fd.Fixes)
		if tt.fix == "" && len(fd.Fixes) > 0 {
			t.Errorf("%s: unexpected fixes %s", tt.name, lines)
		}
		if tt.fix != "" && !strings.Contains(lines, tt.fix) {
			t.Errorf("%s: fixes %s lack %q", tt.name, lines, tt.fix)
		}
	}
	// Absent facts give no finding.
	f := linuxFacts(1 << 20)
	f.ConntrackMax, f.Somaxconn = Value{}, Value{}
	r := Plan(f, Want{})
	if find(r, "conntrack") != nil || find(r, "somaxconn") != nil {
		t.Errorf("findings for unknown facts: %+v", r.Findings)
	}
}

func TestReportOutput(t *testing.T) {
	f := linuxFacts(20000)
	f.PortRangeLow, f.PortRangeHigh = known(32768), known(60999)
	r := Plan(f, Want{MaxConnections: 50000, AppMaxConnections: 60000})
	s := r.String()
	for _, want := range []string{
		"RLIMIT_NOFILE soft", "32768-60999 (28232 ports)", "fd budget", "19800", "50000 (server 50000, apps 60000)",
		"error  nofile:", "LimitNOFILE=65536", "[supervisord]", "minfds=65536", "* soft nofile 65536",
		"net.ipv4.ip_local_port_range = 1024 65535", "FAIL: the configuration cannot be met",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	// The fact rows form one aligned table: values start in one column.
	col := -1
	re := regexp.MustCompile(`^  (RLIMIT_NOFILE soft|fs\.nr_open|MemAvailable|fd budget|capacity|keepalive CPU) +`)
	for _, line := range strings.Split(s, "\n") {
		if m := re.FindString(line); m != "" {
			if col == -1 {
				col = len(m)
			} else if len(m) != col {
				t.Errorf("misaligned row %q (values at %d, want %d)", line, len(m), col)
			}
		}
		if strings.TrimRight(line, " ") != line {
			t.Errorf("trailing spaces in %q", line)
		}
	}

	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		FDBudget int `json:"fd_budget"`
		Target   int `json:"target"`
		Facts    struct {
			NoFileSoft   any `json:"nofile_soft"`
			ConntrackMax any `json:"nf_conntrack_max"`
			Cgroup       any `json:"cgroup_memory_limit"`
		} `json:"facts"`
		Findings []struct {
			Severity string `json:"severity"`
			Check    string `json:"check"`
			Fixes    []Fix  `json:"fixes"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if back.FDBudget != 19800 || back.Target != 50000 || back.Facts.NoFileSoft != 20000.0 ||
		back.Facts.ConntrackMax != nil || back.Facts.Cgroup != "unlimited" {
		t.Errorf("JSON = %+v", back)
	}
	if back.Findings[0].Check != "nofile" || back.Findings[0].Severity != "error" || len(back.Findings[0].Fixes) == 0 {
		t.Errorf("JSON findings[0] = %+v", back.Findings[0])
	}

	ok := Plan(linuxFacts(1<<20), Want{MaxConnections: 1000}).String()
	if !strings.Contains(ok, "OK: capacity") {
		t.Errorf("verdict of a clean plan:\n%s", ok)
	}
}

func TestSeverityText(t *testing.T) {
	for _, s := range []Severity{OK, Warn, Error} {
		b, _ := s.MarshalText()
		var back Severity
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("%v: round trip %v, %v", s, back, err)
		}
	}
	var s Severity
	if s.UnmarshalText([]byte("fatal")) == nil {
		t.Error("unknown severity accepted")
	}
}

func TestHumanBytes(t *testing.T) {
	tests := map[uint64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 6656: "6.5 KiB", 1 << 30: "1.0 GiB", Unlimited: "unlimited"}
	for n, want := range tests {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
