package limits

import (
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
)

// String renders the report for people: one aligned table of the facts
// and the capacity derived from them, then the findings with their fixes,
// the notes and a verdict.
func (r Report) String() string {
	var sb strings.Builder
	f := r.Facts
	if f == nil {
		f = &Facts{}
	}
	fmt.Fprintf(&sb, "Limits of this process on %s\n\n", orUnknown(f.OS))
	tw := tabwriter.NewWriter(&sb, 0, 0, 2, ' ', 0)
	row := func(name, value, source string) { fmt.Fprintf(tw, "  %s\t%s\t%s\n", name, value, source) }
	row("RLIMIT_NOFILE soft", f.NoFileSoft.String(), "getrlimit; Go raises it to the hard limit at start-up")
	row("RLIMIT_NOFILE hard", f.NoFileHard.String(), "getrlimit")
	row("fs.nr_open", f.NrOpen.String(), "/proc/sys/fs/nr_open")
	row("fs.file-max", f.FileMax.String(), "/proc/sys/fs/file-max")
	row("files open system-wide", f.FilesInUse.String(), "/proc/sys/fs/file-nr")
	row("net.core.somaxconn", f.Somaxconn.String(), "/proc/sys/net/core/somaxconn")
	row("net.ipv4.tcp_max_syn_backlog", f.TCPMaxSynBacklog.String(), "/proc/sys/net/ipv4/tcp_max_syn_backlog")
	portRange := "unknown"
	if f.PortRangeLow.Known && f.PortRangeHigh.Known {
		portRange = fmt.Sprintf("%s-%s (%d ports)", f.PortRangeLow, f.PortRangeHigh, f.PortRangeHigh.N-f.PortRangeLow.N+1)
	}
	row("net.ipv4.ip_local_port_range", portRange, "/proc/sys/net/ipv4/ip_local_port_range")
	tcpMem := "unknown"
	if m := f.TCPMem; m[0].Known && m[1].Known && m[2].Known {
		tcpMem = fmt.Sprintf("%s %s %s pages", m[0], m[1], m[2])
		if f.PageSize > 0 {
			tcpMem += fmt.Sprintf(" (max %s)", humanBytes(m[2].N*uint64(f.PageSize)))
		}
	}
	row("net.ipv4.tcp_mem", tcpMem, "/proc/sys/net/ipv4/tcp_mem")
	conntrack := f.ConntrackMax.String()
	if !f.ConntrackMax.Known {
		conntrack = "not loaded"
	}
	row("net.netfilter.nf_conntrack_max", conntrack, "/proc/sys/net/netfilter/nf_conntrack_max")
	row("MemTotal", bytesValue(f.MemTotal), "/proc/meminfo")
	row("MemAvailable", bytesValue(f.MemAvailable), "/proc/meminfo")
	cgSource := f.CgroupMemoryFile
	if cgSource == "" {
		cgSource = "/proc/self/cgroup, memory.max or memory.limit_in_bytes"
	}
	row("cgroup memory limit", bytesValue(f.CgroupMemoryLimit), cgSource)
	row("GOMAXPROCS / NumCPU", fmt.Sprintf("%d / %d", f.GOMAXPROCS, f.NumCPU), "Go runtime")
	row("", "", "")
	row("max connections", r.targetString(), "server.max_connections; apps' max_connections")
	row("event loops", fmt.Sprint(r.Want.Loops), "server.loops")
	row("fd reserve", fmt.Sprint(r.Want.Reserve), fmt.Sprintf("max(%d, 1%% of the soft limit): listeners, epoll, logs, Redis, metrics", MinFDReserve))
	row("fd budget", intOrUnknown(r.FDBudget), "soft limit minus reserve")
	row("memory for connections", bytesValue(r.MemoryBytes), "min(MemAvailable, cgroup limit)")
	row("memory per connection", fmt.Sprintf("%s (%s user + %s kernel)", humanBytes(uint64(r.BytesPerConn())),
		humanBytes(uint64(r.Want.UserBytesPerConn)), humanBytes(uint64(r.Want.KernelBytesPerConn))), "assumed, idle subscribed connection")
	row("memory capacity", intOrUnknown(r.MemoryCapacity), "memory / per connection")
	row("capacity", intOrUnknown(r.Capacity), r.bound())
	row("keepalive CPU", r.keepaliveValue(), r.keepaliveSource())
	tw.Flush()
	table := sb.String()
	sb.Reset()
	for _, line := range strings.SplitAfter(table, "\n") {
		sb.WriteString(strings.TrimRight(line, " \n"))
		if strings.HasSuffix(line, "\n") {
			sb.WriteByte('\n')
		}
	}

	sb.WriteString("\nFindings\n")
	for _, fd := range r.Findings {
		fmt.Fprintf(&sb, "  %-5s  %s: %s\n", fd.Severity, fd.Check, fd.Message)
		for _, fx := range fd.Fixes {
			fmt.Fprintf(&sb, "         fix, %s:\n", fx.Where)
			for _, l := range fx.Lines {
				fmt.Fprintf(&sb, "             %s\n", l)
			}
		}
	}
	if len(r.Notes) > 0 {
		sb.WriteString("\nNotes\n")
		for _, n := range r.Notes {
			fmt.Fprintf(&sb, "  - %s\n", n)
		}
	}
	sb.WriteString("\n" + r.Verdict() + "\n")
	return sb.String()
}

// Verdict is a one-line summary of the findings.
func (r Report) Verdict() string {
	var warns, errs int
	for _, f := range r.Findings {
		switch f.Severity {
		case Warn:
			warns++
		case Error:
			errs++
		}
	}
	switch {
	case errs > 0:
		return fmt.Sprintf("FAIL: the configuration cannot be met on this machine (%s, %s).",
			plural(errs, "error"), plural(warns, "warning"))
	case warns > 0:
		return fmt.Sprintf("OK with %s: capacity %s connections.", plural(warns, "warning"), intOrUnknown(r.Capacity))
	}
	return fmt.Sprintf("OK: capacity %s connections.", intOrUnknown(r.Capacity))
}

// JSON renders the report as indented JSON. Unknown facts are null,
// unlimited ones "unlimited", severities "ok", "warn" or "error".
func (r Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	return append(b, '\n'), nil
}

func (r Report) targetString() string {
	w := r.Want
	switch {
	case w.MaxConnections > 0 && w.AppMaxConnections > 0:
		return fmt.Sprintf("%d (server %d, apps %d)", r.Target, w.MaxConnections, w.AppMaxConnections)
	case w.MaxConnections > 0:
		return fmt.Sprintf("%d (server)", r.Target)
	case w.AppMaxConnections > 0:
		return fmt.Sprintf("%d (sum of the apps)", r.Target)
	}
	return "not set"
}

// bound says what limits the capacity.
func (r Report) bound() string {
	switch {
	case r.Capacity < 0:
		return "unknown"
	case r.FDBudget >= 0 && r.Capacity == r.FDBudget:
		return "min(fd budget, memory capacity): bound by file descriptors"
	}
	return "min(fd budget, memory capacity): bound by memory"
}

// keepaliveValue is the keepalive row's value: "0.333 cores (20.0 µs per
// connection per minute)".
func (r Report) keepaliveValue() string {
	k := r.Keepalive
	if k.Connections <= 0 {
		return "unknown"
	}
	return fmt.Sprintf("%s cores (%.1f µs per conn per min)", formatCores(k.ServerCores), k.ServerMicrosPerConnMinute)
}

// keepaliveSource says what the keepalive row assumes.
func (r Report) keepaliveSource() string {
	k := r.Keepalive
	if k.Connections <= 0 {
		return "no connections planned"
	}
	every := "no pings"
	if k.IntervalSeconds > 0 {
		every = fmt.Sprintf("a ping every %d s", k.IntervalSeconds)
	}
	return fmt.Sprintf("%d idle connections, %s (bench/keepalive.sh)", k.Connections, every)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func intOrUnknown(n int) string {
	if n < 0 {
		return "unknown"
	}
	return fmt.Sprint(n)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func bytesValue(v Value) string {
	if !v.Known || v.IsUnlimited() {
		return v.String()
	}
	return fmt.Sprintf("%s (%d)", humanBytes(v.N), v.N)
}
