package main

import (
	"bytes"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/reverbgo/reverb/limits"
)

// fakeFacts is a Linux machine with RLIMIT_NOFILE 20000 and plenty of memory.
func fakeFacts() (*limits.Facts, error) {
	v := func(n uint64) limits.Value { return limits.Value{N: n, Known: true} }
	return &limits.Facts{
		OS:                "linux",
		NoFileSoft:        v(20000),
		NoFileHard:        v(20000),
		NrOpen:            v(1 << 20),
		FileMax:           v(1 << 24),
		FilesInUse:        v(500),
		Somaxconn:         v(4096),
		TCPMaxSynBacklog:  v(4096),
		PortRangeLow:      v(32768),
		PortRangeHigh:     v(60999),
		MemTotal:          v(16 << 30),
		MemAvailable:      v(12 << 30),
		CgroupMemoryLimit: v(limits.Unlimited),
		PageSize:          4096,
		GOMAXPROCS:        4,
		NumCPU:            4,
	}, nil
}

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "reverb.toml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const twoApps = `
[[apps]]
app_id = "100001"
key = "key-one"
secret = "secret-one"
max_connections = 300

[[apps]]
app_id = "100002"
key = "key-two"
secret = "secret-two"
max_connections = 400
`

// keepaliveApps are two apps with different keepalive settings; the second
// one's connections ping more often.
const keepaliveApps = `
[[apps]]
app_id = "100001"
key = "key-one"
secret = "secret-one"
ping_interval = 120
activity_timeout = 120

[[apps]]
app_id = "100002"
key = "key-two"
secret = "secret-two"
ping_interval = 90
activity_timeout = 45
`

func TestCheckLimits(t *testing.T) {
	tests := []struct {
		name     string
		config   string
		args     []string
		code     int
		stdout   []string
		noStdout []string
	}{
		{"cannot be met", "[server]\nmax_connections = 50000\n", nil, 1,
			[]string{"error  nofile:", "LimitNOFILE=65536", "minfds=65536", "* hard nofile 65536", "FAIL"}, nil},
		{"fits", "[server]\nmax_connections = 1000\nloops = 2\n", nil, 0,
			[]string{"1000 (server)", "fd budget", "19800", "OK"}, []string{"FAIL"}},
		{"apps sum", twoApps, nil, 0, []string{"700 (sum of the apps)"}, nil},
		{"server and apps", "[server]\nmax_connections = 500\n" + twoApps, nil, 0, []string{"500 (server 500, apps 700)"}, nil},
		{"no max", "", nil, 0, []string{"not set", "capacity"}, nil},
		{"keepalive defaults", "[server]\nmax_connections = 15000\n", nil, 0,
			[]string{"keepalive CPU", "0.011 cores (44.3 µs per conn per min)", "15000 idle connections, a ping every 30 s",
				"ok     keepalive: idle keepalive of 15000 connections", "min of ping_interval 60 and activity_timeout 30",
				"0.3% of the 4 CPUs"}, []string{"warn   keepalive"}},
		{"keepalive of the app pinging most often", "[server]\nmax_connections = 15000\n" + keepaliveApps, nil, 0,
			[]string{"a ping every 45 s", "min of ping_interval 90 and activity_timeout 45"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			args := append([]string{"--config", writeConfig(t, tt.config)}, tt.args...)
			code := checkLimits(args, &stdout, &stderr, fakeFacts)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, &stdout, &stderr)
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, &stdout)
				}
			}
			for _, w := range tt.noStdout {
				if strings.Contains(stdout.String(), w) {
					t.Errorf("stdout has %q:\n%s", w, &stdout)
				}
			}
		})
	}
}

func TestCheckLimitsJSON(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cfg := writeConfig(t, "[server]\nmax_connections = 50000\n")
	if code := checkLimits([]string{"--config", cfg, "--json"}, &stdout, &stderr, fakeFacts); code != 1 {
		t.Fatalf("exit %d, stderr %s", code, &stderr)
	}
	var rep struct {
		Target    int              `json:"target"`
		CPUs      int              `json:"cpus"`
		Keepalive limits.Keepalive `json:"keepalive"`
		FDBudget  int              `json:"fd_budget"`
		Findings  []struct {
			Severity string `json:"severity"`
			Check    string `json:"check"`
		} `json:"findings"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("%v:\n%s", err, &stdout)
	}
	if rep.Target != 50000 || rep.FDBudget != 19800 || rep.Findings[0].Check != "nofile" || rep.Findings[0].Severity != "error" {
		t.Errorf("report %+v", rep)
	}
	// 50,000 connections pinging every 30 s on 4 CPUs: 0.04 cores, fine.
	if n := len(rep.Findings); rep.Findings[n-1].Check != "keepalive" || rep.Findings[n-1].Severity != "ok" {
		t.Errorf("last finding %+v, want keepalive ok", rep.Findings[n-1])
	}
	if k := rep.Keepalive; rep.CPUs != 4 || k.Connections != 50000 || k.IntervalSeconds != 30 ||
		math.Abs(k.ServerCores-50000*44.3/60e6) > 0.001 {
		t.Errorf("keepalive %+v on %d CPUs", k, rep.CPUs)
	}
}

func TestCheckLimitsUsage(t *testing.T) {
	good := writeConfig(t, "")
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"unknown flag", []string{"--nope"}, 2},
		{"extra argument", []string{"--config", good, "extra"}, 2},
		{"missing config", []string{"--config", filepath.Join(t.TempDir(), "none.toml")}, 2},
		{"unknown key", []string{"--config", writeConfig(t, "[server]\nmax_conections = 5\n")}, 2},
		{"invalid value", []string{"--config", writeConfig(t, "[server]\nmax_connections = -1\n")}, 2},
		{"help", []string{"-h"}, 0},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if code := checkLimits(tt.args, &stdout, &stderr, fakeFacts); code != tt.code {
			t.Errorf("%s: exit %d, want %d (stderr %s)", tt.name, code, tt.code, &stderr)
		}
		if tt.code == 2 && stderr.Len() == 0 {
			t.Errorf("%s: nothing on stderr", tt.name)
		}
	}
}

// TestCheckLimitsThisMachine runs the command on the real limits: a small
// max_connections fits any machine these tests run on.
func TestCheckLimitsThisMachine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	cfg := writeConfig(t, "[server]\nmax_connections = 100\n")
	if code := checkLimits([]string{"--config", cfg}, &stdout, &stderr, limits.Read); code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	if !strings.Contains(stdout.String(), "RLIMIT_NOFILE hard") {
		t.Errorf("report:\n%s", &stdout)
	}
}
