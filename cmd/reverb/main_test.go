package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/reverbgo/reverb/internal/testkit"
)

// buildBinary builds the reverb command once per test binary run.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "reverb")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a port for a server process (see testkit.FreePort on
// its race).
func freePort(t *testing.T) int {
	t.Helper()
	return testkit.FreePort(t)
}

// waitUp polls GET /up until it answers 200 or 10 s pass.
func waitUp(t *testing.T, port int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/up", port))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not a settle wait
	}
	t.Fatal("server did not answer /up within 10 s")
}

func TestRestartDrainsTheRunningServer(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	cfgPath := filepath.Join(dir, "reverb.toml")
	cfg := fmt.Sprintf("[server]\nhost = \"127.0.0.1\"\nport = %d\npid_dir = %q\ndrain_timeout = 5\n\n[[apps]]\napp_id = \"1\"\nkey = \"k\"\nsecret = \"s\"\n", port, dir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := exec.Command(bin, "start", "--config", cfgPath)
	var logs strings.Builder
	srv.Stderr = &logs
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() {
		_ = srv.Process.Kill()
	})
	waitUp(t, port)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, br, _, err := ws.Dial(ctx, fmt.Sprintf("ws://127.0.0.1:%d/app/k", port))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	var conn io.ReadWriter = nc
	if br != nil { // bytes that arrived with the handshake response
		conn = struct {
			io.Reader
			io.Writer
		}{io.MultiReader(br, nc), nc}
	}
	msg, err := wsutil.ReadServerText(conn)
	if err != nil || !strings.Contains(string(msg), "connection_established") {
		t.Fatalf("first message %q, %v", msg, err)
	}

	out, err := exec.Command(bin, "restart", "--config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("reverb restart: %v\n%s", err, out)
	}
	msg, err = wsutil.ReadServerText(conn)
	if err != nil || !strings.Contains(string(msg), `\"code\":4200`) {
		t.Fatalf("expected pusher:error 4200, got %q, %v", msg, err)
	}
	_, err = wsutil.ReadServerText(conn)
	var closed wsutil.ClosedError
	if !asClosed(err, &closed) || closed.Code != 4200 {
		t.Fatalf("expected close 4200, got %v", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("server exited with %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("server did not exit after restart\n%s", logs.String())
	}
	if files, _ := filepath.Glob(filepath.Join(dir, "reverb-*.pid")); len(files) != 0 {
		t.Fatalf("pid files left behind: %v", files)
	}
}

func asClosed(err error, c *wsutil.ClosedError) bool {
	if e, ok := err.(wsutil.ClosedError); ok {
		*c = e
		return true
	}
	return false
}

func TestRestartWithoutServerFails(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "reverb.toml")
	cfg := fmt.Sprintf("[server]\nport = 1\npid_dir = %q\n", dir)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if code := cmdRestart([]string{"--config", cfgPath}); code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
}
