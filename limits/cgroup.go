package limits

import (
	"io/fs"
	"path"
	"strings"
)

// Where cgroup file systems are mounted when /proc/self/mountinfo cannot be
// read: the unified layout, and the v1 memory controller of the legacy one.
const (
	defaultCgroup2Mount  = "/sys/fs/cgroup"
	defaultCgroupV1Mount = "/sys/fs/cgroup/memory"
)

// readCgroupMemory returns the smallest memory limit on the way from this
// process's cgroup up to the root of each visible hierarchy (v2 memory.max,
// v1 memory.limit_in_bytes), and the file it came from. Unknown when
// /proc/self/cgroup is missing or no level has a limit file.
func (f *Facts) readCgroupMemory(fsys fs.FS) (Value, string) {
	b, ok := f.readFile(fsys, "proc/self/cgroup")
	if !ok {
		return Value{}, ""
	}
	pc, err := parseProcCgroup(b)
	if err != nil {
		f.note("/proc/self/cgroup: %v", err)
		return Value{}, ""
	}
	v2 := &cgroupMount{root: "/", point: defaultCgroup2Mount}
	v1 := &cgroupMount{root: "/", point: defaultCgroupV1Mount}
	if mi, ok := f.readFile(fsys, "proc/self/mountinfo"); ok {
		v2, v1 = parseMountinfo(mi)
	}
	best, file := Value{}, ""
	consider := func(m *cgroupMount, cgPath, name string) {
		if m == nil || cgPath == "" {
			return
		}
		v, fl := f.walkCgroup(fsys, cgroupDir(m, cgPath), m.point, name)
		if v.Known && (!best.Known || v.N < best.N) {
			best, file = v, fl
		}
	}
	consider(v2, pc.v2, "memory.max")
	consider(v1, pc.v1Memory, "memory.limit_in_bytes")
	return best, file
}

// cgroupDir maps a cgroup path from /proc/self/cgroup to a directory under
// mount m. A path outside the mounted root (seen across cgroup namespaces)
// maps to the mount point itself.
func cgroupDir(m *cgroupMount, cgPath string) string {
	rel := path.Clean(cgPath)
	root := path.Clean(m.root)
	switch {
	case root == "/":
	case rel == root:
		rel = "/"
	case strings.HasPrefix(rel, root+"/"):
		rel = strings.TrimPrefix(rel, root)
	default:
		return path.Clean(m.point)
	}
	dir := path.Join(m.point, rel)
	if !within(dir, path.Clean(m.point)) {
		return path.Clean(m.point)
	}
	return dir
}

// within reports whether dir is top or below it.
func within(dir, top string) bool {
	return dir == top || top == "/" || strings.HasPrefix(dir, top+"/")
}

// walkCgroup reads file name in dir and each parent up to top, and returns
// the smallest limit found (Unlimited when all are unlimited) and its file.
func (f *Facts) walkCgroup(fsys fs.FS, dir, top, name string) (Value, string) {
	best, file := Value{}, ""
	for d := dir; ; d = path.Dir(d) {
		p := path.Join(d, name)
		if b, ok := f.readFile(fsys, fsPath(p)); ok {
			n, err := parseCgroupMemoryLimit(b)
			if err != nil {
				f.note("%s: %v", p, err)
			} else if !best.Known || n < best.N {
				best, file = known(n), p
			}
		}
		if d == top || d == "/" || d == "." {
			return best, file
		}
	}
}

// fsPath turns an absolute path into an io/fs path rooted at "/".
func fsPath(p string) string {
	p = strings.TrimPrefix(path.Clean(p), "/")
	if p == "" {
		return "."
	}
	return p
}
