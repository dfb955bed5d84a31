package bench

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"github.com/reverbgo/reverb/internal/testkit"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// selfSigned returns a self-signed ECDSA P-256 certificate for 127.0.0.1
// and the path of its PEM file.
func selfSigned(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	cert, _ := testkit.SelfSigned(t, "bench.test")
	path := filepath.Join(t.TempDir(), "cert.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cert, path
}

// tlsFront terminates TLS on 127.0.0.1:0 in front of the plain server at
// port and returns its port, the CA file and the number of full handshakes
// (not resumed) it ran so far. It stops when the test ends.
func tlsFront(t *testing.T, port int) (int, string, *atomic.Int64) {
	t.Helper()
	cert, caFile := selfSigned(t)
	full := new(atomic.Int64)
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			open = append(open, c, up)
			mu.Unlock()
			wg.Add(2)
			go func() {
				defer wg.Done()
				tc := c.(*tls.Conn)
				if tc.Handshake() == nil && !tc.ConnectionState().DidResume {
					full.Add(1)
				}
				_, _ = io.Copy(up, c)
				up.Close()
			}()
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, up)
				c.Close()
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, caFile, full
}

// smokeTLS runs one small scenario over TLS against a fresh server.
func smokeTLS(t *testing.T, args ...string) (*Result, *atomic.Int64) {
	t.Helper()
	port, caFile, full := tlsFront(t, startServer(t))
	args = append([]string{"--port", strconv.Itoa(port), "--progress", "off", "--timeout", "20s", "--drain", "3s", "--tls"},
		append(testApp, args...)...)
	for i, a := range args {
		if a == "CA" {
			args[i] = caFile
		}
	}
	cfg, err := ParseArgs(args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
	if err != nil {
		t.Fatalf("Run: %v (result %+v)", err, res)
	}
	if res.TimedOut || len(res.Errors) > 0 || res.ServerErrors != 0 || !res.TLS {
		t.Fatalf("errors: %+v", res)
	}
	return res, full
}

func TestTLSConnect(t *testing.T) {
	for _, client := range []string{"gnet", "goroutine"} {
		t.Run(client, func(t *testing.T) {
			res, full := smokeTLS(t, "--scenario", "connect", "--connections", "20", "--channels", "5", "--duration", "100ms",
				"--client", client, "--tls-ca", "CA")
			if res.Connected != 20 || res.Failed != 0 || res.ClosedEarly != 0 || res.ConnectLatency.Count != 20 {
				t.Fatalf("connect: %+v", res)
			}
			// Every connection ran a full handshake (the probe of PickApp
			// does not run: the app flags are given).
			if got := full.Load(); got != 20 {
				t.Fatalf("%d full handshakes, want 20", got)
			}
		})
	}
}

func TestTLSResume(t *testing.T) {
	res, full := smokeTLS(t, "--scenario", "connect", "--connections", "20", "--connect-concurrency", "1", "--duration", "100ms",
		"--tls-ca", "CA", "--tls-resume")
	if res.Connected != 20 || !res.TLSResume {
		t.Fatalf("connect: %+v", res)
	}
	// The first handshake is full; later ones may resume.
	if got := full.Load(); got >= 20 {
		t.Fatalf("%d full handshakes with --tls-resume, want fewer than 20", got)
	}
}

// TestTLSFanout checks that every event triggered over https reaches every
// subscriber over wss, with both runtimes, repeated to catch races between
// the loops decrypting and the pinger and triggers writing.
func TestTLSFanout(t *testing.T) {
	for _, client := range []string{"gnet", "goroutine"} {
		t.Run(client, func(t *testing.T) {
			for round := range 3 {
				res, _ := smokeTLS(t, "--scenario", "fanout", "--connections", "20", "--rate", "20", "--duration", "500ms",
					"--client", client, "--tls-insecure", "--ping-interval", "10ms", "--payload", "5000")
				if res.Triggers != 10 || res.Expected != 200 || res.Received != 200 || res.Loss != 0 || !res.APITLS ||
					res.TriggerLat.Count != 10 {
					t.Fatalf("round %d: triggers %d expected %d received %d loss %d api TLS %v",
						round, res.Triggers, res.Expected, res.Received, res.Loss, res.APITLS)
				}
			}
		})
	}
}

func TestTLSClientEvents(t *testing.T) {
	res, _ := smokeTLS(t, "--scenario", "client-events", "--connections", "10", "--rate", "5", "--duration", "500ms", "--tls-insecure")
	if res.Received == 0 || res.Loss != 0 {
		t.Fatalf("client-events: %+v", res)
	}
}

func TestTLSVerification(t *testing.T) {
	port, caFile, _ := tlsFront(t, startServer(t))
	for _, tc := range []struct {
		name string
		args []string
		ok   bool
	}{
		{"system roots refuse a self-signed certificate", nil, false},
		{"--tls-ca", []string{"--tls-ca", caFile}, true},
		{"--tls-ca with a server name the certificate has", []string{"--tls-ca", caFile, "--tls-server-name", "bench.test"}, true},
		{"--tls-ca with another server name", []string{"--tls-ca", caFile, "--tls-server-name", "other.test"}, false},
		{"--tls-insecure", []string{"--tls-insecure"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--port", strconv.Itoa(port), "--progress", "off", "--timeout", "10s", "--tls",
				"--scenario", "connect", "--connections", "2", "--duration", "10ms"}, append(testApp, tc.args...)...)
			cfg, err := ParseArgs(args, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Run(context.Background(), cfg, io.Discard, io.Discard)
			if tc.ok != (err == nil) {
				t.Fatalf("err %v (result %+v)", err, res)
			}
			if !tc.ok && !strings.Contains(strings.Join(res.Errors, " "), "certificate") {
				t.Fatalf("errors %q do not mention the certificate", res.Errors)
			}
		})
	}
}

// TestTLSWorkers runs a TLS fanout over two worker processes, which get the
// TLS settings (here the CA file) through their spec.
func TestTLSWorkers(t *testing.T) {
	old := workerCommand
	workerCommand = func() (*exec.Cmd, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestWorkerProcess$")
		cmd.Env = append(os.Environ(), "BENCH_WORKER_PROCESS=1")
		return cmd, nil
	}
	defer func() { workerCommand = old }()
	res, full := smokeTLS(t, "--scenario", "fanout", "--connections", "20", "--workers", "2", "--rate", "10", "--duration", "300ms",
		"--tls-ca", "CA")
	if res.Workers != 2 || res.Connected != 20 || res.Triggers != 3 || res.Received != 60 || res.Loss != 0 {
		t.Fatalf("workers: %+v", res)
	}
	if full.Load() < 20 {
		t.Fatalf("%d TLS handshakes, want at least 20", full.Load())
	}
}

func TestTLSAPIAndChurn(t *testing.T) {
	res, _ := smokeTLS(t, "--scenario", "api", "--connections", "2", "--duration", "300ms", "--tls-insecure")
	if res.Ops == 0 || res.TriggerErrors != 0 || !res.APITLS {
		t.Fatalf("api: %+v", res)
	}
	res, full := smokeTLS(t, "--scenario", "churn", "--connections", "2", "--duration", "300ms", "--tls-insecure")
	if res.Ops == 0 || res.Failed != 0 || full.Load() < res.Ops {
		t.Fatalf("churn: %+v (%d handshakes)", res, full.Load())
	}
}
