package limits

import (
	"fmt"
	"math"
)

// Per-connection memory assumptions (bytes), the defaults of
// Want.UserBytesPerConn and Want.KernelBytesPerConn.
//
// User space: gnet keeps no buffers for an idle connection (≈0.4 KB heap
// measured for 15,000 upgraded idle connections with a tiny session); a
// Pusher session with its socket id, app, channel subscriptions and map
// entries brings that to ≈1.5 KB per idle subscribed connection.
//
// Kernel: a TCP socket with default buffers costs ≈4.8 KB of slab (measured:
// 128 MB of Slab for 26,800 sockets), rounded to 5 KB. Data queued in socket
// buffers during broadcasts comes on top (see tcp_mem).
const (
	DefaultUserBytesPerConn   = 1536
	DefaultKernelBytesPerConn = 5120
)

// Thresholds and recommended values used by Plan.
const (
	// MinFDReserve is the smallest number of file descriptors kept back from
	// RLIMIT_NOFILE for everything that is not a client connection.
	MinFDReserve = 64
	// LowFDBudget is the fd budget below which Plan warns when no maximum
	// number of connections is configured.
	LowFDBudget = 10000
	// RecommendedNoFile is the RLIMIT_NOFILE recommended when no maximum
	// number of connections is configured (systemd's usual LimitNOFILE and
	// Linux's default fs.nr_open).
	RecommendedNoFile = 1 << 20
	// RecommendedSomaxconn is the smallest net.core.somaxconn (cap of the
	// accept queue) that absorbs a reconnect storm.
	RecommendedSomaxconn = 4096
	// RecommendedSynBacklog is the smallest net.ipv4.tcp_max_syn_backlog
	// recommended.
	RecommendedSynBacklog = 4096
	// TCPMemPerConn is the socket buffer memory (bytes) per connection that
	// net.ipv4.tcp_mem's upper bound should leave for broadcasts: one page
	// of queued data per connection.
	TCPMemPerConn = 4096
)

// Want is what the configuration asks of the node.
type Want struct {
	// MaxConnections is server.max_connections; 0 means not set.
	MaxConnections int `json:"max_connections"`
	// AppMaxConnections is the sum of the apps' max_connections when every
	// app sets one; 0 when any app is unlimited.
	AppMaxConnections int `json:"app_max_connections"`
	// Loops is the number of event loops; 0 means GOMAXPROCS.
	Loops int `json:"loops"`
	// UserBytesPerConn is the Go heap per idle subscribed connection
	// (session state included). 0 means DefaultUserBytesPerConn.
	UserBytesPerConn int `json:"user_bytes_per_conn"`
	// KernelBytesPerConn is the kernel memory per socket (slab, default
	// buffers, idle). 0 means DefaultKernelBytesPerConn.
	KernelBytesPerConn int `json:"kernel_bytes_per_conn"`
	// Reserve is the number of file descriptors kept for listeners, the
	// epoll and eventfd of each loop, log files, Redis, metrics and DNS.
	// 0 means FDReserve(soft limit).
	Reserve int `json:"fd_reserve"`
	// PingInterval is the apps' ping_interval (seconds): the server pings a
	// connection after that much silence. 0 means DefaultPingInterval.
	PingInterval int `json:"ping_interval"`
	// ActivityTimeout is the apps' activity_timeout (seconds): clients ping
	// after that much silence. 0 means DefaultActivityTimeout.
	ActivityTimeout int `json:"activity_timeout"`
}

// Target is the number of connections the configuration allows on the
// node: the smaller of MaxConnections and AppMaxConnections that are set,
// 0 when neither is.
func (w Want) Target() int {
	switch {
	case w.MaxConnections > 0 && w.AppMaxConnections > 0:
		return min(w.MaxConnections, w.AppMaxConnections)
	case w.MaxConnections > 0:
		return w.MaxConnections
	}
	return max(w.AppMaxConnections, 0)
}

func (w Want) withDefaults(f *Facts) Want {
	if w.Loops <= 0 {
		w.Loops = max(f.GOMAXPROCS, 1)
	}
	if w.UserBytesPerConn <= 0 {
		w.UserBytesPerConn = DefaultUserBytesPerConn
	}
	if w.KernelBytesPerConn <= 0 {
		w.KernelBytesPerConn = DefaultKernelBytesPerConn
	}
	if w.PingInterval <= 0 {
		w.PingInterval = DefaultPingInterval
	}
	if w.ActivityTimeout <= 0 {
		w.ActivityTimeout = DefaultActivityTimeout
	}
	return w
}

// FDReserve is the default number of file descriptors kept back from a
// soft RLIMIT_NOFILE of soft: max(MinFDReserve, 1% of soft).
func FDReserve(soft uint64) int {
	r := soft / 100
	if r > math.MaxInt {
		return math.MaxInt
	}
	return max(MinFDReserve, int(r))
}

// FDBudget is the number of client connections the node may hold before it
// must refuse new ones: the soft RLIMIT_NOFILE minus FDReserve, never
// negative. The transport refuses connections beyond it so that accept(2)
// never fails with EMFILE, which makes gnet shut its whole engine down.
// Refusing happens after accept, so the reserve also covers the connections
// being accepted and closed at the same time (at most one per loop).
// FDBudget returns -1 when the limit is unknown (platforms without
// RLIMIT_NOFILE).
func FDBudget(f *Facts) int {
	if f == nil || !f.NoFileSoft.Known {
		return -1
	}
	return fdBudget(f.NoFileSoft.N, FDReserve(f.NoFileSoft.N))
}

func fdBudget(soft uint64, reserve int) int {
	b := Value{N: soft, Known: true}.Int() - reserve
	return max(b, 0)
}

// noFileFor returns the smallest soft limit whose budget holds n
// connections, with reserve (0 = the default reserve).
func noFileFor(n, reserve int) int {
	if reserve > 0 {
		return n + reserve
	}
	lim := n + MinFDReserve
	for lim-FDReserve(uint64(lim)) < n {
		lim = n + FDReserve(uint64(lim))
	}
	return lim
}

// recommendNoFile rounds a needed limit up to a power of two, at least
// 65536, so the fix leaves head room and reads well.
func recommendNoFile(need int) int {
	r := 1 << 16
	for r < need {
		r <<= 1
	}
	return r
}

// Severity grades a Finding.
type Severity int

// Severities, from best to worst.
const (
	OK Severity = iota
	Warn
	Error
)

// String returns "ok", "warn" or "error".
func (s Severity) String() string {
	switch s {
	case OK:
		return "ok"
	case Warn:
		return "warn"
	case Error:
		return "error"
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// MarshalText encodes s as its String.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText is the inverse of MarshalText.
func (s *Severity) UnmarshalText(b []byte) error {
	for _, v := range []Severity{OK, Warn, Error} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("limits: unknown severity %q", b)
}

// Fix is one change that resolves a finding: lines to put in one place.
type Fix struct {
	// Where says which file or tool the lines go to.
	Where string `json:"where"`
	// Lines are to be copied as they are.
	Lines []string `json:"lines"`
}

// Finding is one verdict of Plan.
type Finding struct {
	Severity Severity `json:"severity"`
	// Check names what was checked: nofile, memory, file-max, somaxconn,
	// syn-backlog, port-range, conntrack, tcp-mem, loops, keepalive.
	Check   string `json:"check"`
	Message string `json:"message"`
	// Fixes are set for warnings and errors.
	Fixes []Fix `json:"fixes,omitempty"`
}

// Report is the result of Plan.
type Report struct {
	Facts *Facts `json:"facts"`
	// Want is the request with its defaults filled in.
	Want Want `json:"want"`
	// Target is Want.Target(): the configured maximum, 0 if none.
	Target int `json:"target"`
	// FDBudget is the soft RLIMIT_NOFILE minus Want.Reserve; -1 if unknown.
	FDBudget int `json:"fd_budget"`
	// MemoryBytes is min(MemAvailable, cgroup memory limit).
	MemoryBytes Value `json:"memory_bytes"`
	// MemoryCapacity is MemoryBytes divided by the bytes per connection;
	// -1 if unknown.
	MemoryCapacity int `json:"memory_capacity"`
	// Capacity is min(FDBudget, MemoryCapacity) of those known; -1 if
	// neither is.
	Capacity int `json:"capacity"`
	// CPUs is the number of CPUs the server can use: min(GOMAXPROCS,
	// NumCPU) of those known; 0 if neither is.
	CPUs int `json:"cpus"`
	// Keepalive is the CPU estimate for the pings of the planned
	// connections (the configured maximum, else Capacity) when idle.
	Keepalive Keepalive `json:"keepalive"`
	// Findings come in a fixed order, one per check that applies.
	Findings []Finding `json:"findings"`
	// Notes are caveats about the facts.
	Notes []string `json:"notes,omitempty"`

	reserveSet bool // Want.Reserve was given, not derived from the limit
}

// Worst is the highest severity among the findings (OK if none).
func (r Report) Worst() Severity {
	w := OK
	for _, f := range r.Findings {
		w = max(w, f.Severity)
	}
	return w
}

// BytesPerConn is the memory assumed per connection, user plus kernel.
func (r Report) BytesPerConn() int { return r.Want.UserBytesPerConn + r.Want.KernelBytesPerConn }

const sysctlWhere = "sysctl: /etc/sysctl.d/60-reverb.conf, then `sysctl --system`"

// Plan compares the facts with what the configuration wants and says what
// the node can hold and what to change.
func Plan(f *Facts, want Want) Report {
	if f == nil {
		f = &Facts{}
	}
	want = want.withDefaults(f)
	r := Report{Facts: f, Target: want.Target(), FDBudget: -1, MemoryCapacity: -1, Capacity: -1,
		CPUs: f.cpus(), reserveSet: want.Reserve > 0}
	if f.NoFileSoft.Known {
		if want.Reserve <= 0 {
			want.Reserve = FDReserve(f.NoFileSoft.N)
		}
		r.FDBudget = fdBudget(f.NoFileSoft.N, want.Reserve)
	} else if want.Reserve <= 0 {
		want.Reserve = MinFDReserve
	}
	r.Want = want

	mem := f.MemAvailable
	if c := f.CgroupMemoryLimit; c.Known && !c.IsUnlimited() && (!mem.Known || c.N < mem.N) {
		mem = c
	}
	r.MemoryBytes = mem
	if mem.Known {
		r.MemoryCapacity = Value{N: mem.N / uint64(r.BytesPerConn()), Known: true}.Int()
	}
	switch {
	case r.FDBudget >= 0 && r.MemoryCapacity >= 0:
		r.Capacity = min(r.FDBudget, r.MemoryCapacity)
	case r.FDBudget >= 0:
		r.Capacity = r.FDBudget
	default:
		r.Capacity = r.MemoryCapacity
	}
	// planned is what the node should be ready for: the configured maximum,
	// else what it can hold.
	planned := r.Target
	if planned == 0 {
		planned = max(r.Capacity, 0)
	}

	r.checkNoFile()
	r.checkFileMax(planned)
	r.checkMemory()
	r.checkSomaxconn()
	r.checkSynBacklog()
	r.checkPortRange(planned)
	r.checkConntrack(planned)
	r.checkTCPMem(planned)
	r.checkLoops()
	r.checkKeepalive(planned)

	r.Notes = append(r.Notes,
		"The limits are those of this process. The server gets those of whatever starts it "+
			"(systemd LimitNOFILE=, supervisor minfds, the shell's ulimit -n): run check-limits the same way, "+
			"e.g. as ExecStartPre= in the systemd unit.")
	r.Notes = append(r.Notes, f.Notes...)
	return r
}

func (r *Report) add(s Severity, check, msg string, fixes ...Fix) {
	r.Findings = append(r.Findings, Finding{Severity: s, Check: check, Message: msg, Fixes: fixes})
}

func (r *Report) checkNoFile() {
	f := r.Facts
	if !f.NoFileSoft.Known {
		r.add(Warn, "nofile", "RLIMIT_NOFILE is unknown on this platform; the fd budget cannot be checked.")
		return
	}
	var need int
	var msg string
	sev := OK
	switch {
	case r.Target > r.FDBudget:
		sev = Error
		reserve := 0 // the default reserve grows with the limit
		if r.reserveSet {
			reserve = r.Want.Reserve
		}
		need = noFileFor(r.Target, reserve)
		msg = fmt.Sprintf("max connections %d exceed the fd budget %d (RLIMIT_NOFILE soft %s minus %d reserved); "+
			"the configuration cannot be met: RLIMIT_NOFILE must be at least %d.",
			r.Target, r.FDBudget, f.NoFileSoft, r.Want.Reserve, need)
		need = recommendNoFile(need)
	case r.Target == 0 && r.FDBudget < LowFDBudget:
		sev = Warn
		need = RecommendedNoFile
		msg = fmt.Sprintf("no max connections configured and the fd budget is only %d (RLIMIT_NOFILE soft %s minus %d reserved); "+
			"the node refuses connections beyond it.", r.FDBudget, f.NoFileSoft, r.Want.Reserve)
	case r.Target == 0:
		msg = fmt.Sprintf("fd budget %d (RLIMIT_NOFILE soft %s minus %d reserved); with no max connections configured "+
			"the node refuses connections beyond it. For 100k+ connections raise it to %d.",
			r.FDBudget, f.NoFileSoft, r.Want.Reserve, RecommendedNoFile)
	default:
		msg = fmt.Sprintf("max connections %d fit the fd budget %d (RLIMIT_NOFILE soft %s minus %d reserved).",
			r.Target, r.FDBudget, f.NoFileSoft, r.Want.Reserve)
	}
	if sev == OK {
		r.add(OK, "nofile", msg)
		return
	}
	r.add(sev, "nofile", msg, noFileFixes(f, need)...)
}

// noFileFixes are the ways to give the server RLIMIT_NOFILE n.
func noFileFixes(f *Facts, n int) []Fix {
	fixes := []Fix{
		{Where: "systemd unit, [Service] section (then `systemctl daemon-reload` and restart)",
			Lines: []string{fmt.Sprintf("LimitNOFILE=%d", n)}},
		{Where: "supervisor, supervisord.conf (then restart supervisord itself, not only the program)",
			Lines: []string{"[supervisord]", fmt.Sprintf("minfds=%d", n)}},
		{Where: "/etc/security/limits.conf (login sessions and `su`; services ignore it), then log in again",
			Lines: []string{fmt.Sprintf("* soft nofile %d", n), fmt.Sprintf("* hard nofile %d", n)}},
	}
	var sysctl []string
	if f.NrOpen.Known && f.NrOpen.N < uint64(n) {
		sysctl = append(sysctl, fmt.Sprintf("fs.nr_open = %d", n))
	}
	if f.FileMax.Known && f.FileMax.N < uint64(n)+inUse(f) {
		sysctl = append(sysctl, fmt.Sprintf("fs.file-max = %d", uint64(2*n)+inUse(f)))
	}
	if len(sysctl) > 0 {
		// The hard limit cannot exceed fs.nr_open: raise it first.
		fixes = append([]Fix{{Where: sysctlWhere + " (first: no RLIMIT_NOFILE can exceed fs.nr_open)", Lines: sysctl}}, fixes...)
	}
	return fixes
}

func inUse(f *Facts) uint64 {
	if f.FilesInUse.Known {
		return f.FilesInUse.N
	}
	return 0
}

func (r *Report) checkFileMax(planned int) {
	f := r.Facts
	if !f.FileMax.Known || f.FileMax.IsUnlimited() {
		return
	}
	free := int64(min(f.FileMax.N, math.MaxInt64/2)) - int64(inUse(f))
	need := int64(planned + r.Want.Reserve)
	fix := Fix{Where: sysctlWhere, Lines: []string{fmt.Sprintf("fs.file-max = %d", uint64(2*need)+inUse(f))}}
	switch {
	case r.Target > 0 && need > free:
		r.add(Error, "file-max", fmt.Sprintf("fs.file-max %s with %d files already open system-wide leaves %d, "+
			"fewer than the %d this node needs; the configuration cannot be met.", f.FileMax, inUse(f), free, need), fix)
	case need > free:
		r.add(Warn, "file-max", fmt.Sprintf("fs.file-max %s with %d files already open system-wide leaves %d, "+
			"fewer than the %d the node could otherwise hold.", f.FileMax, inUse(f), free, need), fix)
	default:
		r.add(OK, "file-max", fmt.Sprintf("fs.file-max %s (%d in use) leaves room for %d connections.", f.FileMax, inUse(f), planned))
	}
}

func (r *Report) checkMemory() {
	if r.MemoryCapacity < 0 {
		r.add(Warn, "memory", "available memory is unknown on this platform; capacity is the fd budget only.")
		return
	}
	per := r.BytesPerConn()
	what := fmt.Sprintf("%s of memory (min of MemAvailable and the cgroup limit) at %s per connection (%s user + %s kernel) holds %d connections",
		humanBytes(r.MemoryBytes.N), humanBytes(uint64(per)), humanBytes(uint64(r.Want.UserBytesPerConn)),
		humanBytes(uint64(r.Want.KernelBytesPerConn)), r.MemoryCapacity)
	need := uint64(r.Target) * uint64(per)
	switch {
	case r.Target > r.MemoryCapacity:
		fixes := []Fix{{Where: "reverb.toml (or give the node more memory)",
			Lines: []string{"[server]", fmt.Sprintf("max_connections = %d", r.MemoryCapacity)}}}
		if c := r.Facts.CgroupMemoryLimit; c.Known && c == r.MemoryBytes {
			fixes = append(fixes, Fix{
				Where: "or raise the cgroup memory limit " + r.Facts.CgroupMemoryFile + ": systemd unit [Service] (docker: --memory)",
				Lines: []string{fmt.Sprintf("MemoryMax=%d", need+need/4)}})
		}
		r.add(Error, "memory", fmt.Sprintf("%s; max connections %d need %s: the configuration cannot be met.",
			what, r.Target, humanBytes(need)), fixes...)
	case r.Target == 0 && r.FDBudget >= 0 && r.MemoryCapacity < r.FDBudget:
		r.add(Warn, "memory", fmt.Sprintf("%s, fewer than the fd budget %d: with no max connections configured the node "+
			"would run out of memory before it starts refusing connections.", what, r.FDBudget),
			Fix{Where: "reverb.toml", Lines: []string{"[server]", fmt.Sprintf("max_connections = %d", r.MemoryCapacity)}})
	default:
		r.add(OK, "memory", what+".")
	}
}

func (r *Report) checkSomaxconn() {
	f := r.Facts
	if !f.Somaxconn.Known {
		return
	}
	if f.Somaxconn.N < RecommendedSomaxconn {
		r.add(Warn, "somaxconn", fmt.Sprintf("net.core.somaxconn %s caps the accept queue; when many clients reconnect "+
			"at once (a restart, a network blip) connections beyond it are dropped and retried.", f.Somaxconn),
			Fix{Where: sysctlWhere, Lines: []string{fmt.Sprintf("net.core.somaxconn = %d", RecommendedSomaxconn)}})
		return
	}
	r.add(OK, "somaxconn", fmt.Sprintf("net.core.somaxconn %s.", f.Somaxconn))
}

func (r *Report) checkSynBacklog() {
	f := r.Facts
	if !f.TCPMaxSynBacklog.Known {
		return
	}
	if f.TCPMaxSynBacklog.N < RecommendedSynBacklog {
		r.add(Warn, "syn-backlog", fmt.Sprintf("net.ipv4.tcp_max_syn_backlog %s: during a reconnect storm half-open "+
			"connections beyond it fall back to SYN cookies or are dropped.", f.TCPMaxSynBacklog),
			Fix{Where: sysctlWhere, Lines: []string{fmt.Sprintf("net.ipv4.tcp_max_syn_backlog = %d", RecommendedSynBacklog*2)}})
		return
	}
	r.add(OK, "syn-backlog", fmt.Sprintf("net.ipv4.tcp_max_syn_backlog %s.", f.TCPMaxSynBacklog))
}

func (r *Report) checkPortRange(planned int) {
	f := r.Facts
	if !f.PortRangeLow.Known || !f.PortRangeHigh.Known {
		return
	}
	ports := int(f.PortRangeHigh.N - f.PortRangeLow.N + 1)
	about := fmt.Sprintf("net.ipv4.ip_local_port_range %s-%s gives %d ephemeral ports: a reverse proxy (nginx) or a load "+
		"client on this machine opens at most %d connections from one source IP to one backend address "+
		"(the server's own inbound connections do not use them)", f.PortRangeLow, f.PortRangeHigh, ports, ports)
	wide := f.PortRangeLow.N <= 1024 && f.PortRangeHigh.N >= 65535
	switch {
	case planned > ports && !wide:
		r.add(Warn, "port-range", fmt.Sprintf("%s, fewer than the %d connections planned.", about, planned),
			Fix{Where: sysctlWhere, Lines: []string{"net.ipv4.ip_local_port_range = 1024 65535"}},
			severalBackends)
	case planned > ports:
		// Nothing to widen: only several backend addresses help, and only
		// behind a proxy on this machine.
		r.add(OK, "port-range", fmt.Sprintf("%s; behind such a proxy list several backend addresses "+
			"(127.0.0.1:8080, 127.0.0.2:8080, ...) for the %d connections planned.", about, planned))
	default:
		r.add(OK, "port-range", about+".")
	}
}

// severalBackends is the nginx fix for more proxied connections than ports.
var severalBackends = Fix{
	Where: "nginx: beyond ~64k per backend address, list several (the server listens on 0.0.0.0)",
	Lines: []string{"upstream reverb {", "    server 127.0.0.1:8080;", "    server 127.0.0.2:8080;",
		"    server 127.0.0.3:8080;", "}"},
}

func (r *Report) checkConntrack(planned int) {
	f := r.Facts
	if !f.ConntrackMax.Known {
		return
	}
	// A connection proxied on this machine is tracked twice (client to
	// proxy, proxy to server).
	need := planned + r.Want.Reserve
	if f.ConntrackMax.N < uint64(need) {
		r.add(Warn, "conntrack", fmt.Sprintf("net.netfilter.nf_conntrack_max %s is below the %d connections planned; "+
			"when the table is full the kernel drops new connections (\"nf_conntrack: table full\"). "+
			"A connection proxied on this machine counts twice.", f.ConntrackMax, need),
			Fix{Where: sysctlWhere, Lines: []string{fmt.Sprintf("net.netfilter.nf_conntrack_max = %d", recommendNoFile(2*need))}})
		return
	}
	r.add(OK, "conntrack", fmt.Sprintf("net.netfilter.nf_conntrack_max %s (a connection proxied on this machine counts twice).", f.ConntrackMax))
}

func (r *Report) checkTCPMem(planned int) {
	f := r.Facts
	if !f.TCPMem[2].Known || f.PageSize <= 0 || planned <= 0 {
		return
	}
	page := uint64(f.PageSize)
	high := f.TCPMem[2].N * page
	per := high / uint64(planned)
	if per < TCPMemPerConn {
		hi := (uint64(planned)*TCPMemPerConn + page - 1) / page
		r.add(Warn, "tcp-mem", fmt.Sprintf("net.ipv4.tcp_mem allows %s of socket buffers in all, %s per connection for %d "+
			"connections; when a broadcast queues more, TCP enters memory pressure and shrinks every buffer.",
			humanBytes(high), humanBytes(per), planned),
			Fix{Where: sysctlWhere + " (pages of " + humanBytes(page) + ")",
				Lines: []string{fmt.Sprintf("net.ipv4.tcp_mem = %d %d %d", hi/2, hi*3/4, hi)}})
		return
	}
	r.add(OK, "tcp-mem", fmt.Sprintf("net.ipv4.tcp_mem allows %s of socket buffers, %s per connection for %d connections.",
		humanBytes(high), humanBytes(per), planned))
}

func (r *Report) checkLoops() {
	f := r.Facts
	if f.GOMAXPROCS > 0 && r.Want.Loops > f.GOMAXPROCS {
		r.add(Warn, "loops", fmt.Sprintf("%d event loops on GOMAXPROCS %d: loops beyond the CPUs add latency, not throughput.",
			r.Want.Loops, f.GOMAXPROCS),
			Fix{Where: "reverb.toml", Lines: []string{"[server]", "loops = 0  # one per CPU"}})
		return
	}
	r.add(OK, "loops", fmt.Sprintf("%d event loops on GOMAXPROCS %d (NumCPU %d).", r.Want.Loops, f.GOMAXPROCS, f.NumCPU))
}

// humanBytes formats n in binary units: "23.1 GiB", "512 B".
func humanBytes(n uint64) string {
	if n == Unlimited {
		return "unlimited"
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
