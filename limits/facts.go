// Package limits reads the operating-system limits that bound how many
// WebSocket connections one node can hold (open files, kernel queues,
// ephemeral ports, memory) and plans a capacity from them.
//
// Read collects the facts, Plan compares them with the configuration and
// says what to change (EstimateKeepalive adds the CPU that the pings of
// idle connections cost), and FDBudget tells the transport how many
// connections it may accept before it must refuse new ones: gnet shuts its
// whole engine down when accept(2) fails with EMFILE, so the server must
// never get there.
//
// Linux is the target. Elsewhere the facts that come from /proc and cgroups
// are unknown, and RLIMIT_NOFILE is read where the platform has it.
package limits

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"runtime"
	"strconv"
)

// Unlimited is the N of a Value that has no limit: RLIM_INFINITY, a cgroup
// memory.max of "max", or a cgroup v1 limit_in_bytes at its maximum.
const Unlimited = math.MaxUint64

// Value is a number read from the system, or unknown when it could not be
// read (missing file, other platform). Known with N == Unlimited means "no
// limit". In JSON an unknown value is null, an unlimited one "unlimited".
type Value struct {
	N     uint64
	Known bool
}

// known returns a known Value.
func known(n uint64) Value { return Value{N: n, Known: true} }

// IsUnlimited reports whether v is known and has no limit.
func (v Value) IsUnlimited() bool { return v.Known && v.N == Unlimited }

// Int returns v as an int, clamped to math.MaxInt, and -1 when unknown.
func (v Value) Int() int {
	if !v.Known {
		return -1
	}
	if v.N > math.MaxInt {
		return math.MaxInt
	}
	return int(v.N)
}

// String returns the number, "unlimited" or "unknown".
func (v Value) String() string {
	switch {
	case !v.Known:
		return "unknown"
	case v.N == Unlimited:
		return "unlimited"
	}
	return strconv.FormatUint(v.N, 10)
}

// MarshalJSON encodes v as a number, "unlimited" or null.
func (v Value) MarshalJSON() ([]byte, error) {
	switch {
	case !v.Known:
		return []byte("null"), nil
	case v.N == Unlimited:
		return []byte(`"unlimited"`), nil
	}
	return strconv.AppendUint(nil, v.N, 10), nil
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (v *Value) UnmarshalJSON(b []byte) error {
	switch string(b) {
	case "null":
		*v = Value{}
		return nil
	case `"unlimited"`:
		*v = known(Unlimited)
		return nil
	}
	var n uint64
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	*v = known(n)
	return nil
}

// Facts are the limits of this machine and process, as read by Read. Sizes
// are in bytes; unknown values are left unknown, never guessed.
type Facts struct {
	// OS is runtime.GOOS.
	OS string `json:"os"`
	// NoFileSoft and NoFileHard are RLIMIT_NOFILE of this process now. Go
	// (>= 1.19) raises the soft limit to the hard one at start-up, so the
	// soft limit is normally equal to the hard limit here; a server started
	// by systemd or supervisor gets the limits of its unit or minfds, which
	// may differ from those of a login shell.
	NoFileSoft Value `json:"nofile_soft"`
	NoFileHard Value `json:"nofile_hard"`
	// NrOpen is /proc/sys/fs/nr_open, the ceiling of any RLIMIT_NOFILE.
	NrOpen Value `json:"fs_nr_open"`
	// FileMax is /proc/sys/fs/file-max, open files system-wide.
	FileMax Value `json:"fs_file_max"`
	// FilesInUse is allocated minus free from /proc/sys/fs/file-nr.
	FilesInUse Value `json:"fs_files_in_use"`
	// Somaxconn is /proc/sys/net/core/somaxconn, the cap of a listen
	// backlog (the accept queue).
	Somaxconn Value `json:"net_core_somaxconn"`
	// TCPMaxSynBacklog is /proc/sys/net/ipv4/tcp_max_syn_backlog.
	TCPMaxSynBacklog Value `json:"net_ipv4_tcp_max_syn_backlog"`
	// PortRangeLow and PortRangeHigh are /proc/sys/net/ipv4/ip_local_port_range.
	PortRangeLow  Value `json:"port_range_low"`
	PortRangeHigh Value `json:"port_range_high"`
	// TCPMem is /proc/sys/net/ipv4/tcp_mem (low, pressure, high) in pages.
	TCPMem [3]Value `json:"net_ipv4_tcp_mem_pages"`
	// ConntrackMax is /proc/sys/net/netfilter/nf_conntrack_max; unknown when
	// connection tracking is not loaded.
	ConntrackMax Value `json:"nf_conntrack_max"`
	// MemTotal and MemAvailable come from /proc/meminfo.
	MemTotal     Value `json:"mem_total"`
	MemAvailable Value `json:"mem_available"`
	// CgroupMemoryLimit is the smallest memory limit of this process's
	// cgroup and its ancestors: memory.max (v2) or memory.limit_in_bytes
	// (v1). Unlimited when every level says so; unknown when no cgroup
	// memory controller is visible.
	CgroupMemoryLimit Value `json:"cgroup_memory_limit"`
	// CgroupMemoryFile is the file CgroupMemoryLimit was read from.
	CgroupMemoryFile string `json:"cgroup_memory_file,omitempty"`
	// PageSize is os.Getpagesize().
	PageSize int `json:"page_size"`
	// GOMAXPROCS and NumCPU are the Go runtime's values.
	GOMAXPROCS int `json:"gomaxprocs"`
	NumCPU     int `json:"num_cpu"`
	// Notes are problems met while reading (unreadable or malformed files);
	// the facts concerned are unknown.
	Notes []string `json:"notes,omitempty"`
}

// Read reads the facts of this machine and process. Files that do not exist
// leave their facts unknown; files that cannot be read or parsed do too and
// add a note. The error is non-nil only when RLIMIT_NOFILE cannot be read on
// a platform that has it; the other facts are still returned.
func Read() (*Facts, error) {
	return readFacts(os.DirFS("/"), getNoFile)
}

// readFacts reads the facts from fsys (a view of the root file system) and
// the rlimit function.
func readFacts(fsys fs.FS, nofile func() (soft, hard uint64, err error)) (*Facts, error) {
	f := &Facts{
		OS:         runtime.GOOS,
		PageSize:   os.Getpagesize(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
		NumCPU:     runtime.NumCPU(),
	}
	var err error
	soft, hard, rerr := nofile()
	switch {
	case rerr == nil:
		f.NoFileSoft, f.NoFileHard = known(soft), known(hard)
	case errors.Is(rerr, errors.ErrUnsupported):
		f.note("RLIMIT_NOFILE: not available on %s", runtime.GOOS)
	default:
		err = fmt.Errorf("limits: getrlimit(RLIMIT_NOFILE): %w", rerr)
		f.note("RLIMIT_NOFILE: %v", rerr)
	}

	f.NrOpen = f.readUint(fsys, "proc/sys/fs/nr_open")
	f.FileMax = f.readUint(fsys, "proc/sys/fs/file-max")
	if b, ok := f.readFile(fsys, "proc/sys/fs/file-nr"); ok {
		if n, perr := parseFileNr(b); perr != nil {
			f.note("/proc/sys/fs/file-nr: %v", perr)
		} else {
			f.FilesInUse = known(n)
		}
	}
	f.Somaxconn = f.readUint(fsys, "proc/sys/net/core/somaxconn")
	f.TCPMaxSynBacklog = f.readUint(fsys, "proc/sys/net/ipv4/tcp_max_syn_backlog")
	if b, ok := f.readFile(fsys, "proc/sys/net/ipv4/ip_local_port_range"); ok {
		if lo, hi, perr := parsePortRange(b); perr != nil {
			f.note("/proc/sys/net/ipv4/ip_local_port_range: %v", perr)
		} else {
			f.PortRangeLow, f.PortRangeHigh = known(lo), known(hi)
		}
	}
	if b, ok := f.readFile(fsys, "proc/sys/net/ipv4/tcp_mem"); ok {
		if m, perr := parseTCPMem(b); perr != nil {
			f.note("/proc/sys/net/ipv4/tcp_mem: %v", perr)
		} else {
			for i := range m {
				f.TCPMem[i] = known(m[i])
			}
		}
	}
	f.ConntrackMax = f.readUint(fsys, "proc/sys/net/netfilter/nf_conntrack_max")
	if b, ok := f.readFile(fsys, "proc/meminfo"); ok {
		mi := parseMeminfo(b)
		if n, ok := mi["MemTotal"]; ok {
			f.MemTotal = known(n)
		}
		if n, ok := mi["MemAvailable"]; ok {
			f.MemAvailable = known(n)
		}
	}
	f.CgroupMemoryLimit, f.CgroupMemoryFile = f.readCgroupMemory(fsys)
	return f, err
}

func (f *Facts) note(format string, args ...any) {
	f.Notes = append(f.Notes, fmt.Sprintf(format, args...))
}

// readFile returns the contents of name, or false: silently when it does not
// exist, with a note otherwise.
func (f *Facts) readFile(fsys fs.FS, name string) ([]byte, bool) {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			f.note("/%s: %v", name, err)
		}
		return nil, false
	}
	return b, true
}

// readUint reads a file holding one unsigned integer.
func (f *Facts) readUint(fsys fs.FS, name string) Value {
	b, ok := f.readFile(fsys, name)
	if !ok {
		return Value{}
	}
	n, err := parseUint(b)
	if err != nil {
		f.note("/%s: %v", name, err)
		return Value{}
	}
	return known(n)
}
