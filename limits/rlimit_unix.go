//go:build unix

package limits

import "syscall"

// getNoFile returns RLIMIT_NOFILE of this process.
func getNoFile() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}

// RaiseNoFile raises the soft RLIMIT_NOFILE of this process to its hard
// limit and returns both as they are afterwards. Go (>= 1.19) already does
// this at start-up, so this normally changes nothing and just reports the
// limits; it matters if something lowered the soft limit since. On error
// the returned limits are those in force.
func RaiseNoFile() (soft, hard uint64, err error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0, err
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if serr := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); serr != nil {
			return uint64(rl.Cur), uint64(rl.Max), serr
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
			return 0, 0, err
		}
	}
	return uint64(rl.Cur), uint64(rl.Max), nil
}
