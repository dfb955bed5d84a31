package redistest

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// readyTimeout bounds the wait for a process to answer, for a replica
	// to sync and for a cluster or the sentinels to agree.
	readyTimeout = 20 * time.Second
	// pollInterval is the pause between two checks of a condition.
	pollInterval = 20 * time.Millisecond
	// pollTimeout bounds one command sent while polling.
	pollTimeout = time.Second
	// doTimeout bounds one command sent by Do and Command.
	doTimeout = 5 * time.Second
	// stopTimeout is how long Stop waits after SIGTERM before SIGKILL.
	stopTimeout = 5 * time.Second
	// startAttempts is how many ports Start tries before it gives up.
	startAttempts = 5

	// Ports are picked at random in [portMin, portMax), below Linux's
	// default ephemeral range so that outgoing connections rarely hold them.
	portMin = 20000
	portMax = 30000
)

// Server is one redis-server or redis-sentinel process listening on
// 127.0.0.1.
//
// The exported fields are set when the Server is returned and never change.
// Stop, Pause, Resume, Do and Command are safe for concurrent use; Restart
// must not run concurrently with other calls on the same Server.
type Server struct {
	// Addr is "127.0.0.1:<Port>", the address clients connect to.
	Addr string
	// Port is the TCP port the server listens on: its only port, which
	// is its TLS port for a server started by StartTLS. Restart keeps it.
	Port int
	// ClusterPort is the cluster bus port of a node started by
	// StartCluster, and 0 for other servers.
	ClusterPort int
	// Dir is the working directory of the process. It holds the config
	// file (redis.conf or sentinel.conf), the log (redis.log) and, for a
	// cluster node, nodes.conf.
	Dir string

	bin     string      // path of the binary
	conf    string      // path of the config file
	logPath string      // stdout and stderr of every run, appended
	tls     *tls.Config // non-nil when the server only speaks TLS

	mu       sync.Mutex
	cmd      *exec.Cmd     // the current or last run; nil before the first
	done     chan struct{} // closed when cmd has exited
	logStart int64         // size of the log when cmd started
}

// Start starts a standalone redis-server on a free port of 127.0.0.1 and
// waits until it answers PING. The process runs in a directory of
// t.TempDir() with the config
//
//	port <free port>
//	bind 127.0.0.1
//	protected-mode no
//	save ""
//	appendonly no
//	repl-diskless-sync-delay 0
//
// (the last so that a replica syncs at once instead of after 5 s),
// followed by extraConf, each element one redis.conf line such as
// "maxmemory 10mb"; a later line overrides an earlier one. Start retries on
// another port when the chosen one turns out to be taken. The server is
// stopped in t.Cleanup.
func Start(t testing.TB, extraConf ...string) *Server {
	t.Helper()
	return start(t, "redis-server", "redis.conf", 1, func(dir string, ports []int) []string {
		return append(append(baseConf(dir, ports[0]), "repl-diskless-sync-delay 0"), extraConf...)
	})
}

// baseConf returns the config lines every process gets.
func baseConf(dir string, port int) []string {
	return []string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"protected-mode no",
		"daemonize no",
		`logfile ""`,
		"dir " + quote(dir),
		`save ""`,
		"appendonly no",
	}
}

// quote quotes s for a Redis config file.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// lookPath returns the path of a Redis binary or fails the test.
func lookPath(t testing.TB, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		pkg := map[string]string{
			"redis-server":   "redis-server",
			"redis-sentinel": "redis-sentinel",
			"redis-cli":      "redis-tools",
		}[name]
		t.Fatalf("redistest: %s is not installed (%v); `make test` installs it (Debian package %s)", name, err, pkg)
	}
	return path
}

// start starts bin with the config conf returns for nports free ports, the
// first of which is the client port, and retries with other ports when one
// is taken.
func start(t testing.TB, name, confName string, nports int, conf func(dir string, ports []int) []string) *Server {
	t.Helper()
	return startOver(t, nil, name, confName, nports, conf)
}

// startOver is start for a server that speaks TLS only, with tlsConf as
// the client side, when tlsConf is not nil.
func startOver(t testing.TB, tlsConf *tls.Config, name, confName string, nports int, conf func(dir string, ports []int) []string) *Server {
	t.Helper()
	bin := lookPath(t, name)
	dir := t.TempDir()
	s := &Server{
		Dir:     dir,
		bin:     bin,
		conf:    filepath.Join(dir, confName),
		logPath: filepath.Join(dir, "redis.log"),
		tls:     tlsConf,
	}
	t.Cleanup(s.Stop)
	for range startAttempts {
		ports := reservePorts(t, nports)
		s.Port = ports[0]
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		if nports > 1 {
			s.ClusterPort = ports[1]
		}
		// Start each attempt afresh (a cluster node writes nodes.conf
		// before it binds its ports), keeping the log.
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if e.Name() != filepath.Base(s.logPath) {
				os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
		text := strings.Join(conf(dir, ports), "\n") + "\n"
		if err := os.WriteFile(s.conf, []byte(text), 0o644); err != nil {
			t.Fatalf("redistest: %v", err)
		}
		err := s.launch()
		if err == nil {
			err = s.waitReady(readyTimeout)
		}
		if err == nil {
			return s
		}
		s.Stop()
		if !errors.Is(err, errAddrInUse) {
			t.Fatalf("redistest: %s on %s: %v\nlog tail:\n%s", name, s.Addr, err, s.logTail())
		}
	}
	t.Fatalf("redistest: %s: no free port after %d attempts\nlog tail:\n%s", name, startAttempts, s.logTail())
	return nil
}

var (
	portsMu  sync.Mutex
	reserved = map[int]bool{} // ports handed out by this test binary
)

// reservePorts picks n distinct ports that no other server of this test
// binary uses and that are free right now. Another process may still take
// one before the server binds it; start then retries.
func reservePorts(t testing.TB, n int) []int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	ports := make([]int, 0, n)
	for tries := 0; len(ports) < n; tries++ {
		if tries == 1000 {
			t.Fatalf("redistest: no free port in [%d, %d)", portMin, portMax)
		}
		p := portMin + rand.IntN(portMax-portMin)
		if reserved[p] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		ln.Close()
		reserved[p] = true
		ports = append(ports, p)
	}
	return ports
}

// errAddrInUse reports that the process exited because a port was taken.
var errAddrInUse = errors.New("address already in use")

// launch starts the process with the config file, appending its output to
// the log.
func (s *Server) launch() error {
	f, err := os.OpenFile(s.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer f.Close() // the child has its own descriptor
	st, err := f.Stat()
	if err != nil {
		return err
	}
	cmd := exec.Command(s.bin, s.conf)
	cmd.Dir = s.Dir
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done, s.logStart = cmd, done, st.Size()
	s.mu.Unlock()
	return nil
}

// waitReady waits until the process answers PING on s.Addr. It checks the
// process id in INFO so that another server already listening on the port
// is not mistaken for this one, which then exits with errAddrInUse.
func (s *Server) waitReady(timeout time.Duration) error {
	s.mu.Lock()
	cmd, done, logStart := s.cmd, s.done, s.logStart
	s.mu.Unlock()
	pid := strconv.Itoa(cmd.Process.Pid)
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-done:
			if bytes.Contains(s.readLog(logStart), []byte("Address already in use")) {
				return errAddrInUse
			}
			return fmt.Errorf("exited: %v", cmd.ProcessState)
		default:
		}
		last = s.checkPid(pid)
		if last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not ready after %v: %v", timeout, last)
		}
		select {
		case <-done:
		case <-time.After(pollInterval):
		}
	}
}

func (s *Server) checkPid(pid string) error {
	pong, err := commandStringOver(s.Addr, s.tls, pollTimeout, "PING")
	if err != nil {
		return err
	}
	if pong != "PONG" {
		return fmt.Errorf("PING answered %q", pong)
	}
	info, err := commandStringOver(s.Addr, s.tls, pollTimeout, "INFO", "server")
	if err != nil {
		return err
	}
	if got := infoField(info, "process_id"); got != pid {
		return fmt.Errorf("port held by process %s", got)
	}
	return nil
}

// Stop stops the process: SIGTERM (and SIGCONT, in case it is paused),
// then SIGKILL if it has not exited within 5 s. It returns once the
// process has exited. Stop is idempotent and does nothing before the first
// start or after the process has exited.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	p := s.cmd.Process
	p.Signal(syscall.SIGTERM)
	p.Signal(syscall.SIGCONT)
	select {
	case <-s.done:
	case <-time.After(stopTimeout):
		p.Kill()
		<-s.done
	}
}

// Restart starts the process again on the same port, with the same
// directory and config file, and waits until it answers PING. A running
// process is stopped first. Data is not kept across a restart, but config
// that the server rewrote (CONFIG REWRITE, or a sentinel's state) is. If
// the port is taken meanwhile, Restart keeps trying until its deadline.
// The process is also stopped in t.Cleanup.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	t.Cleanup(s.Stop)
	deadline := time.Now().Add(readyTimeout)
	for {
		err := s.launch()
		if err == nil {
			err = s.waitReady(time.Until(deadline))
		}
		if err == nil {
			return
		}
		s.Stop()
		if !errors.Is(err, errAddrInUse) || time.Now().After(deadline) {
			t.Fatalf("redistest: restart %s on %s: %v\nlog tail:\n%s", filepath.Base(s.bin), s.Addr, err, s.logTail())
		}
		time.Sleep(pollInterval)
	}
}

// Pause stops the process with SIGSTOP: it keeps its connections and
// port but answers nothing until Resume. Pause does nothing if the process
// is not running.
func (s *Server) Pause() { s.signal(syscall.SIGSTOP) }

// Resume continues a process stopped by Pause with SIGCONT.
func (s *Server) Resume() { s.signal(syscall.SIGCONT) }

func (s *Server) signal(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(sig)
}

// Do runs a command on a new connection to the server and returns the
// reply formatted as by Command. It fails the test on an error, including
// an error reply.
func (s *Server) Do(t testing.TB, args ...string) string {
	t.Helper()
	reply, err := s.Command(args...)
	if err != nil {
		t.Fatalf("redistest: %s %q: %v", s.Addr, args, err)
	}
	return reply
}

// Command runs a command on a new connection to the server (over TLS for
// a server started by StartTLS), allowing it 5 s (a paused server makes
// it time out). The reply is formatted as text: a status or bulk string
// as it is, an integer in decimal, a nil as "", and an array as its
// elements, one per line. An error reply is returned as an error whose
// message is the reply, such as
// "READONLY You can't write against a read only replica.".
func (s *Server) Command(args ...string) (string, error) {
	return commandStringOver(s.Addr, s.tls, doTimeout, args...)
}

// readLog returns the log from offset on.
func (s *Server) readLog(offset int64) []byte {
	f, err := os.Open(s.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return nil
	}
	b, _ := io.ReadAll(f)
	return b
}

// logTail returns the last lines of the log.
func (s *Server) logTail() string {
	const maxLines = 30
	lines := strings.Split(strings.TrimRight(string(s.readLog(0)), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}

// poll calls cond until it reports true, every pollInterval for at most
// timeout, and otherwise fails the test with what, cond's last detail and
// the log tails of servers.
func poll(t testing.TB, timeout time.Duration, what string, servers []*Server, cond func() (ok bool, detail string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, detail := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			fmt.Fprintf(&b, "redistest: %s: not done after %v: %s", what, timeout, detail)
			for _, s := range servers {
				fmt.Fprintf(&b, "\n--- %s %s log tail:\n%s", filepath.Base(s.bin), s.Addr, s.logTail())
			}
			t.Fatalf("%s", b.String())
		}
		time.Sleep(pollInterval)
	}
}
