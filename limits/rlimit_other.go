//go:build !unix

package limits

import "errors"

// getNoFile reports that this platform has no RLIMIT_NOFILE.
func getNoFile() (soft, hard uint64, err error) {
	return 0, 0, errors.ErrUnsupported
}

// RaiseNoFile raises the soft RLIMIT_NOFILE of this process to its hard
// limit and returns both as they are afterwards. This platform has no
// RLIMIT_NOFILE: it returns errors.ErrUnsupported.
func RaiseNoFile() (soft, hard uint64, err error) {
	return 0, 0, errors.ErrUnsupported
}
