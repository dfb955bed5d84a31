package limits

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// parseUint parses a file holding one unsigned decimal integer, such as
// /proc/sys/fs/nr_open.
func parseUint(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not an unsigned integer: %q", s)
	}
	return n, nil
}

// parseFields parses a line of exactly n unsigned integers separated by
// white space, such as /proc/sys/net/ipv4/tcp_mem.
func parseFields(b []byte, n int) ([]uint64, error) {
	fields := strings.Fields(string(b))
	if len(fields) != n {
		return nil, fmt.Errorf("want %d numbers, got %q", n, strings.TrimSpace(string(b)))
	}
	out := make([]uint64, n)
	for i, s := range fields {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("not an unsigned integer: %q", s)
		}
		out[i] = v
	}
	return out, nil
}

// parseFileNr parses /proc/sys/fs/file-nr ("allocated free max") and returns
// the handles in use, allocated minus free (free is 0 since Linux 2.6).
func parseFileNr(b []byte) (uint64, error) {
	v, err := parseFields(b, 3)
	if err != nil {
		return 0, err
	}
	if v[1] > v[0] {
		return 0, fmt.Errorf("free %d exceeds allocated %d", v[1], v[0])
	}
	return v[0] - v[1], nil
}

// parsePortRange parses /proc/sys/net/ipv4/ip_local_port_range ("lo hi").
func parsePortRange(b []byte) (lo, hi uint64, err error) {
	v, err := parseFields(b, 2)
	if err != nil {
		return 0, 0, err
	}
	if v[0] > v[1] || v[1] > 65535 {
		return 0, 0, fmt.Errorf("invalid range %d-%d", v[0], v[1])
	}
	return v[0], v[1], nil
}

// parseTCPMem parses /proc/sys/net/ipv4/tcp_mem ("low pressure high" pages).
func parseTCPMem(b []byte) ([3]uint64, error) {
	v, err := parseFields(b, 3)
	if err != nil {
		return [3]uint64{}, err
	}
	return [3]uint64{v[0], v[1], v[2]}, nil
}

// parseMeminfo parses /proc/meminfo into bytes per key ("MemTotal:
// 24683656 kB"). Lines it cannot parse are skipped.
func parseMeminfo(b []byte) map[string]uint64 {
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 || len(fields) > 2 {
			continue
		}
		n, err := strconv.ParseUint(fields[0], 10, 64)
		if err != nil {
			continue
		}
		if len(fields) == 2 {
			if fields[1] != "kB" || n > Unlimited/1024 {
				continue
			}
			n *= 1024
		}
		m[strings.TrimSpace(key)] = n
	}
	return m
}

// cgroupV1Unlimited: cgroup v1 reports "no limit" as LONG_MAX rounded down to
// a page (9223372036854771712); anything this large is no limit.
const cgroupV1Unlimited = 1 << 62

// parseCgroupMemoryLimit parses memory.max (v2: a number or "max") or
// memory.limit_in_bytes (v1: a number, huge meaning no limit).
func parseCgroupMemoryLimit(b []byte) (uint64, error) {
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return Unlimited, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// v1 may print -1 for "no limit" when written as such.
		if s == "-1" {
			return Unlimited, nil
		}
		return 0, fmt.Errorf("not a memory limit: %q", s)
	}
	if n >= cgroupV1Unlimited {
		return Unlimited, nil
	}
	return n, nil
}

// procCgroup is this process's place in the cgroup hierarchies, from
// /proc/self/cgroup.
type procCgroup struct {
	v2       string // path in the unified hierarchy ("0::/path"), "" if none
	v1Memory string // path in the v1 memory hierarchy, "" if none
}

// parseProcCgroup parses /proc/self/cgroup lines "id:controllers:path".
func parseProcCgroup(b []byte) (procCgroup, error) {
	var pc procCgroup
	sc := bufio.NewScanner(bytes.NewReader(b))
	lines := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		lines++
		id, rest, ok1 := strings.Cut(line, ":")
		ctrls, path, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(path, "/") {
			return procCgroup{}, fmt.Errorf("malformed line %q", line)
		}
		if id == "0" && ctrls == "" {
			pc.v2 = path
			continue
		}
		for _, c := range strings.Split(ctrls, ",") {
			if c == "memory" {
				pc.v1Memory = path
			}
		}
	}
	if lines == 0 {
		return procCgroup{}, errors.New("empty")
	}
	return pc, nil
}

// cgroupMount is a cgroup file system mount from /proc/self/mountinfo.
type cgroupMount struct {
	root  string // the cgroup path mounted (field 4)
	point string // where it is mounted (field 5)
}

// parseMountinfo returns the cgroup2 mount and the cgroup v1 mount carrying
// the memory controller, from /proc/self/mountinfo lines
// "id parent maj:min root point opts [optional...] - fstype source superopts".
func parseMountinfo(b []byte) (v2, v1Memory *cgroupMount) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 1 {
			continue
		}
		m := &cgroupMount{root: unescapeMount(pf[3]), point: unescapeMount(pf[4])}
		switch qf[0] {
		case "cgroup2":
			if v2 == nil {
				v2 = m
			}
		case "cgroup":
			if len(qf) < 3 || v1Memory != nil {
				continue
			}
			for _, o := range strings.Split(qf[2], ",") {
				if o == "memory" {
					v1Memory = m
				}
			}
		}
	}
	return v2, v1Memory
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var sb strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				sb.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		sb.WriteByte(s[i])
	}
	return sb.String()
}
