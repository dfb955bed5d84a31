package limits

import (
	"os"
	"testing"
)

// TestReadThisMachine runs Read on the machine running the tests. With
// REVERB_TEST_MACHINE_LIMITS=1 it also asserts what is known of the
// reference machine (RLIMIT_NOFILE hard limit 20000, ports 32768-60999);
// elsewhere only that the values are sane and consistent.
func TestReadThisMachine(t *testing.T) {
	f, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range f.Notes {
		t.Log("note:", n)
	}
	if f.GOMAXPROCS < 1 || f.NumCPU < 1 || f.PageSize < 1 {
		t.Errorf("GOMAXPROCS %d NumCPU %d PageSize %d", f.GOMAXPROCS, f.NumCPU, f.PageSize)
	}
	if f.OS != "linux" {
		t.Skipf("the /proc facts are Linux only; soft %v hard %v", f.NoFileSoft, f.NoFileHard)
	}
	for name, v := range map[string]Value{
		"NoFileSoft": f.NoFileSoft, "NoFileHard": f.NoFileHard, "NrOpen": f.NrOpen, "FileMax": f.FileMax,
		"FilesInUse": f.FilesInUse, "Somaxconn": f.Somaxconn, "TCPMaxSynBacklog": f.TCPMaxSynBacklog,
		"PortRangeLow": f.PortRangeLow, "PortRangeHigh": f.PortRangeHigh, "TCPMem[2]": f.TCPMem[2],
		"MemTotal": f.MemTotal, "MemAvailable": f.MemAvailable,
	} {
		if !v.Known || v.N == 0 {
			t.Errorf("%s = %v, want a known value > 0", name, v)
		}
	}
	if f.NoFileSoft.N > f.NoFileHard.N {
		t.Errorf("soft %v > hard %v", f.NoFileSoft, f.NoFileHard)
	}
	if !f.NoFileHard.IsUnlimited() && f.NrOpen.Known && f.NoFileHard.N > f.NrOpen.N {
		t.Errorf("hard %v > fs.nr_open %v", f.NoFileHard, f.NrOpen)
	}
	if f.PortRangeLow.N >= f.PortRangeHigh.N {
		t.Errorf("port range %v-%v", f.PortRangeLow, f.PortRangeHigh)
	}
	if f.MemAvailable.N > f.MemTotal.N {
		t.Errorf("MemAvailable %v > MemTotal %v", f.MemAvailable, f.MemTotal)
	}
	if !(f.TCPMem[0].N <= f.TCPMem[1].N && f.TCPMem[1].N <= f.TCPMem[2].N) {
		t.Errorf("tcp_mem %v not ordered", f.TCPMem)
	}
	if c := f.CgroupMemoryLimit; c.Known && !c.IsUnlimited() && c.N == 0 {
		t.Errorf("cgroup memory limit 0 from %s", f.CgroupMemoryFile)
	}
	// Go raised the soft limit to the hard one at start-up; RaiseNoFile
	// must agree with Read and not lower anything.
	soft, hard, err := RaiseNoFile()
	if err != nil || soft != hard || hard != f.NoFileHard.N || soft < f.NoFileSoft.N {
		t.Errorf("RaiseNoFile = %d, %d, %v; Read saw %v, %v", soft, hard, err, f.NoFileSoft, f.NoFileHard)
	}
	if b := FDBudget(f); b != int(f.NoFileSoft.N)-FDReserve(f.NoFileSoft.N) {
		t.Errorf("FDBudget = %d with soft %v", b, f.NoFileSoft)
	}

	if os.Getenv("REVERB_TEST_MACHINE_LIMITS") != "1" {
		t.Logf("soft %v hard %v ports %v-%v cgroup %v (%s); set REVERB_TEST_MACHINE_LIMITS=1 on the reference machine "+
			"to check them", f.NoFileSoft, f.NoFileHard, f.PortRangeLow, f.PortRangeHigh, f.CgroupMemoryLimit, f.CgroupMemoryFile)
		return
	}
	if f.NoFileHard != known(20000) {
		t.Errorf("RLIMIT_NOFILE hard = %v, want 20000 on the reference machine", f.NoFileHard)
	}
	if f.PortRangeLow != known(32768) || f.PortRangeHigh != known(60999) {
		t.Errorf("ip_local_port_range = %v-%v, want 32768-60999 on the reference machine", f.PortRangeLow, f.PortRangeHigh)
	}
	if r := Plan(f, Want{}); r.FDBudget != 19800 {
		t.Errorf("fd budget %d, want 19800 on the reference machine", r.FDBudget)
	}
}
