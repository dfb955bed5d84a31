package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lockedBuffer collects a process's output while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestBenchAgainstStartWithoutConfig is the newcomer's path with the built
// binary: `reverb start` with no configuration (the built-in app), then
// `reverb bench` without app flags, from the same directory and
// environment. Both take the port from REVERB_SERVER_PORT (8080 may be
// taken here) and bind or dial loopback.
func TestBenchAgainstStartWithoutConfig(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REVERB_") && !strings.HasPrefix(kv, "REDIS_") && !strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	env = append(env, "REVERB_SERVER_HOST=127.0.0.1", "REVERB_SERVER_PORT="+strconv.Itoa(port), "TMPDIR="+dir)

	srv := exec.Command(bin, "start")
	srv.Dir, srv.Env = dir, env
	logs := &lockedBuffer{}
	srv.Stderr = logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = srv.Process.Kill()
			<-exited
		}
	})
	waitUp(t, port)
	if !strings.Contains(logs.String(), "REVERB_APP_KEY=local-key") {
		t.Fatalf("the server does not serve the built-in app:\n%s", logs.String())
	}

	bench := exec.Command(bin, "bench", "--connections", "200", "--duration", "300ms", "--progress", "off", "--timeout", "60s")
	bench.Dir, bench.Env = dir, env
	var stdout, stderr bytes.Buffer
	bench.Stdout, bench.Stderr = &stdout, &stderr
	if err := bench.Run(); err != nil {
		t.Fatalf("reverb bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stderr.String(), "app local (key local-key)") {
		t.Errorf("bench does not say which app it uses:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stdout.String()), "\n")
	var res struct {
		Server    string   `json:"server"`
		Connected int      `json:"connected"`
		Failed    int      `json:"failed"`
		Errors    []string `json:"errors"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("last line is not the JSON summary: %v\n%s", err, stdout.String())
	}
	if res.Server != "127.0.0.1:"+strconv.Itoa(port) || res.Connected != 200 || res.Failed != 0 || len(res.Errors) != 0 {
		t.Fatalf("bench: %+v\n%s", res, stdout.String())
	}
}
