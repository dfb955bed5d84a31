package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// shardHandle is how the coordinator drives a shard, in this process or in
// a worker process.
type shardHandle interface {
	ready() <-chan shardReady
	status() shardStatus
	startSending()
	stopSending()
	// settle tells the shard the sequence numbers of the accepted events
	// (--reconnect): its status then says what its connected slots owe.
	settle(seqs []int64)
	// finish stops the shard and returns its result. A worker process
	// keeps its connections open until release.
	finish() (shardResult, error)
	// release lets a finished worker process exit, which closes its
	// connections in the kernel. The caller releases every shard once all
	// have reported: a worker that exited as soon as it reported had the
	// kernel close its ~18,000 connections while the others were still
	// reporting, and at a million connections those closes starved them.
	release()
}

// localShard runs a shard in this process.
type localShard struct {
	s      *shard
	readyc chan shardReady
}

func startLocal(ctx context.Context, spec shardSpec) (*localShard, error) {
	s, err := newShard(spec)
	if err != nil {
		return nil, err
	}
	l := &localShard{s: s, readyc: make(chan shardReady, 1)}
	go func() { l.readyc <- s.connect(ctx) }()
	return l, nil
}

func (l *localShard) ready() <-chan shardReady { return l.readyc }
func (l *localShard) status() shardStatus      { return l.s.status() }
func (l *localShard) startSending()            { l.s.startSending() }
func (l *localShard) stopSending()             { l.s.stopSending() }
func (l *localShard) settle(seqs []int64)      { l.s.settle(seqs) }
func (l *localShard) finish() (shardResult, error) {
	return l.s.finish(), nil
}

func (l *localShard) release() {}

// workerMsg is one line a worker writes to its stdout.
type workerMsg struct {
	Type   string       `json:"t"`
	Ready  *shardReady  `json:"ready,omitempty"`
	Status *shardStatus `json:"status,omitempty"`
	Result *shardResult `json:"result,omitempty"`
	Err    string       `json:"err,omitempty"`
}

// workerCommand returns the command that runs a worker process. Tests
// replace it.
var workerCommand = func() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "bench", "--worker"), nil
}

// remoteShard drives a shard in a worker process over its stdin and stdout.
type remoteShard struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	w       io.WriteCloser
	readyc  chan shardReady
	resultc chan shardResult
	done    chan struct{}
	err     atomic.Value // string
	st      atomic.Pointer[shardStatus]
}

func startRemote(spec shardSpec, stderr io.Writer) (*remoteShard, error) {
	cmd, err := workerCommand()
	if err != nil {
		return nil, err
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := newRemote(stdin, stdout)
	r.cmd = cmd
	if err := r.send(spec); err != nil {
		_ = cmd.Process.Kill()
		return nil, err
	}
	go func() {
		<-r.done
		_ = cmd.Wait()
	}()
	return r, nil
}

func newRemote(w io.WriteCloser, out io.Reader) *remoteShard {
	r := &remoteShard{w: w, readyc: make(chan shardReady, 1), resultc: make(chan shardResult, 1), done: make(chan struct{})}
	r.st.Store(&shardStatus{})
	go r.read(out)
	return r
}

func (r *remoteShard) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.line(string(b))
}

func (r *remoteShard) line(s string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, err := io.WriteString(r.w, s+"\n")
	return err
}

func (r *remoteShard) read(out io.Reader) {
	defer close(r.done)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var m workerMsg
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			r.err.Store(fmt.Sprintf("worker: bad line %.80q", sc.Text()))
			continue
		}
		switch m.Type {
		case "status":
			r.st.Store(m.Status)
		case "ready":
			r.readyc <- *m.Ready
		case "result":
			r.st.Store(&m.Result.Status)
			r.resultc <- *m.Result
			return
		case "error":
			r.err.Store("worker: " + m.Err)
		}
	}
	if r.err.Load() == nil {
		r.err.Store("worker exited without a result")
	}
	select {
	case r.readyc <- shardReady{Err: r.err.Load().(string)}:
	default:
	}
}

func (r *remoteShard) ready() <-chan shardReady { return r.readyc }
func (r *remoteShard) status() shardStatus      { return *r.st.Load() }
func (r *remoteShard) startSending()            { _ = r.line("send") }
func (r *remoteShard) stopSending()             { _ = r.line("stop") }
func (r *remoteShard) settle(seqs []int64) {
	b, _ := json.Marshal(seqs)
	_ = r.line("settle " + string(b))
}

func (r *remoteShard) finish() (shardResult, error) {
	_ = r.line("finish")
	t := time.NewTimer(60 * time.Second)
	defer t.Stop()
	select {
	case res := <-r.resultc:
		return res, nil
	case <-r.done:
		select {
		case res := <-r.resultc:
			return res, nil
		default:
		}
	case <-t.C:
		r.err.Store("worker did not report in 60 s")
	}
	_ = r.w.Close()
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
	}
	msg, _ := r.err.Load().(string)
	return shardResult{Status: r.status()}, errors.New(msg)
}

// release closes the worker's input: it exits.
func (r *remoteShard) release() { _ = r.w.Close() }

// RunWorker serves one shard for a coordinator: it reads the shard's spec
// as one JSON line from in, reports on out (status lines every 250 ms, a
// ready line when its connections are up, a result line at the end) and
// obeys "send", "stop", "settle [seq,...]" and "finish" lines. End of
// input means finish. After its result it waits for the end of its input
// (shardHandle.release) with its connections open. It returns the process
// exit code.
func RunWorker(in io.Reader, out io.Writer) int {
	var mu sync.Mutex
	emit := func(m workerMsg) {
		b, _ := json.Marshal(m)
		mu.Lock()
		_, _ = out.Write(append(b, '\n'))
		mu.Unlock()
	}
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	if !sc.Scan() {
		emit(workerMsg{Type: "error", Err: "no spec"})
		return 2
	}
	var spec shardSpec
	if err := json.Unmarshal(sc.Bytes(), &spec); err != nil {
		emit(workerMsg{Type: "error", Err: "bad spec: " + err.Error()})
		return 2
	}
	s, err := newShard(spec)
	if err != nil {
		emit(workerMsg{Type: "error", Err: err.Error()})
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), spec.Config.Timeout)
	defer cancel()
	stopStatus := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopStatus:
				return
			case <-t.C:
				st := s.status()
				emit(workerMsg{Type: "status", Status: &st})
			}
		}
	}()
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
	}()
	readyc := make(chan shardReady, 1)
	go func() { readyc <- s.connect(ctx) }()
	var ready bool
	for {
		select {
		case r := <-readyc:
			ready = true
			emit(workerMsg{Type: "ready", Ready: &r})
			continue
		case <-ctx.Done():
		case c, ok := <-cmds:
			if ok && c == "send" {
				s.startSending()
				continue
			}
			if ok && c == "stop" {
				s.stopSending()
				continue
			}
			if arg, found := strings.CutPrefix(c, "settle "); ok && found {
				var seqs []int64
				if err := json.Unmarshal([]byte(arg), &seqs); err != nil {
					emit(workerMsg{Type: "error", Err: "bad settle: " + err.Error()})
				} else {
					s.settle(seqs)
				}
				continue
			}
		}
		break
	}
	if !ready {
		cancel() // stop connecting before finishing
		<-readyc
	}
	close(stopStatus)
	wg.Wait()
	// The process exits next: the kernel closes the connections.
	res := s.finishOpen()
	emit(workerMsg{Type: "result", Result: &res})
	for range cmds {
	}
	return 0
}
