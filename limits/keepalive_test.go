package limits

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func near(a, b, tol float64) bool { return math.Abs(a-b) <= tol }

func TestEstimateKeepalive(t *testing.T) {
	tests := []struct {
		name           string
		conns, pi, at  int
		interval       int
		server, client float64 // µs per connection per minute
		serverCores    float64
	}{
		// The two measurements the model is fitted to (bench/RESULTS.md).
		{"measured 30 s", 15000, 30, 30, 30, 44.3, 42.0, 15000 * 44.3 / 60e6},
		{"measured 120 s", 15000, 120, 120, 120, 20.0, 16.3, 15000 * 20.0 / 60e6},
		{"defaults: client pings first", 1000, 60, 30, 30, 44.3, 42.0, 1000 * 44.3 / 60e6},
		{"server pings first", 1000, 30, 120, 30, 44.3, 42.0, 1000 * 44.3 / 60e6},
		{"60 s", 1000, 60, 120, 60, 28.1, 24.8, 1000 * 28.1 / 60e6},
		{"one million at 120 s", 1000000, 120, 120, 120, 20.0, 16.3, 0.33},
		{"one million at 30 s", 1000000, 60, 30, 30, 44.3, 42.0, 0.74},
		{"only the server pings", 1000, 120, 0, 120, 20.0, 16.3, 1000 * 20.0 / 60e6},
		{"only clients ping", 1000, -1, 120, 120, 20.0, 16.3, 1000 * 20.0 / 60e6},
		{"nobody pings", 1000, 0, 0, 0, ServerMicrosPerConnMinute, ClientMicrosPerConnMinute, 1000 * ServerMicrosPerConnMinute / 60e6},
		{"no connections", 0, 60, 30, 30, 44.3, 42.0, 0},
		{"negative connections", -5, 60, 30, 30, 44.3, 42.0, 0},
	}
	for _, tt := range tests {
		k := EstimateKeepalive(tt.conns, tt.pi, tt.at)
		if k.IntervalSeconds != tt.interval {
			t.Errorf("%s: interval %d, want %d", tt.name, k.IntervalSeconds, tt.interval)
		}
		if tt.interval > 0 && !near(k.PingsPerMinute, 60/float64(tt.interval), 1e-9) {
			t.Errorf("%s: %v pings per minute", tt.name, k.PingsPerMinute)
		}
		// Within 0.5 µs of the measurements: the fit must keep matching them.
		if !near(k.ServerMicrosPerConnMinute, tt.server, 0.5) || !near(k.ClientMicrosPerConnMinute, tt.client, 0.5) {
			t.Errorf("%s: server %.2f client %.2f µs, want %.1f %.1f", tt.name,
				k.ServerMicrosPerConnMinute, k.ClientMicrosPerConnMinute, tt.server, tt.client)
		}
		if !near(k.ServerCores, tt.serverCores, 0.01) {
			t.Errorf("%s: %.4f server cores, want %.4f", tt.name, k.ServerCores, tt.serverCores)
		}
		if k.Connections != max(tt.conns, 0) || k.PingInterval != tt.pi || k.ActivityTimeout != tt.at {
			t.Errorf("%s: echoed %+v", tt.name, k)
		}
		if !near(k.ClientCores, coresFor(k.Connections, k.ClientMicrosPerConnMinute), 1e-12) {
			t.Errorf("%s: client cores %v", tt.name, k.ClientCores)
		}
	}
	if s := EstimateKeepalive(1000000, 120, 120).String(); !strings.HasPrefix(s, "0.333 cores for 1000000 connections, 20.") ||
		!strings.HasSuffix(s, "µs per connection per minute, one ping round trip every 120 s") {
		t.Errorf("String() = %q", s)
	}
	if s := EstimateKeepalive(10, 0, 0).String(); !strings.HasSuffix(s, ", no pings") {
		t.Errorf("String() = %q", s)
	}
}

func TestFormatCores(t *testing.T) {
	tests := map[float64]string{0: "0", 0.00412: "0.0041", 0.4107: "0.411", 0.993: "0.993", 2.976: "2.98", 12.34: "12.3"}
	for c, want := range tests {
		if got := formatCores(c); got != want {
			t.Errorf("formatCores(%v) = %q, want %q", c, got, want)
		}
	}
}

func TestFactsCPUs(t *testing.T) {
	tests := []struct{ gomaxprocs, numCPU, want int }{{8, 8, 8}, {2, 8, 2}, {8, 4, 4}, {0, 4, 4}, {3, 0, 3}, {0, 0, 0}}
	for _, tt := range tests {
		f := &Facts{GOMAXPROCS: tt.gomaxprocs, NumCPU: tt.numCPU}
		if got := f.cpus(); got != tt.want {
			t.Errorf("cpus(GOMAXPROCS %d, NumCPU %d) = %d, want %d", tt.gomaxprocs, tt.numCPU, got, tt.want)
		}
	}
}

func TestPlanKeepalive(t *testing.T) {
	twoCPUs := func(f *Facts) { f.GOMAXPROCS, f.NumCPU = 2, 2 }
	tests := []struct {
		name     string
		mutate   func(*Facts)
		want     Want
		sev      Severity
		msg      []string
		fixLines []string // every line of every fix, in order
	}{
		{"defaults, small", func(*Facts) {}, Want{MaxConnections: 100000}, OK,
			[]string{"100000 connections", "every 30 s (min of ping_interval 60 and activity_timeout 30)", "0.074 cores", "of the 8 CPUs"}, nil},
		{"warn, raising the intervals is enough", twoCPUs, Want{MaxConnections: 1000000}, Warn,
			[]string{"0.738 cores", "36.9% of the 2 CPUs", "more than 25%", "it would cost 0.333 cores"},
			[]string{"ping_interval = 300", "activity_timeout = 120"}},
		{"warn, intervals and CPUs", twoCPUs, Want{MaxConnections: 3000000}, Warn,
			[]string{"2.21 cores", "it would cost 1.00 cores", "Even then, keeping it under 25% needs 4 CPUs"},
			[]string{"ping_interval = 300", "activity_timeout = 120", "[server]", "max_connections = 15000"}},
		{"warn at 120 s: only CPUs", twoCPUs, Want{MaxConnections: 3000000, PingInterval: 120, ActivityTimeout: 120}, Warn,
			[]string{"1.00 cores", "Keeping it under 25% needs 4 CPUs"},
			[]string{"[server]", "max_connections = 15000"}},
		{"longer settings are not lowered", twoCPUs, Want{MaxConnections: 1000000, PingInterval: 300, ActivityTimeout: 30}, Warn,
			[]string{"min of ping_interval 300 and activity_timeout 30"},
			[]string{"ping_interval = 300", "activity_timeout = 120"}},
		{"GOMAXPROCS below NumCPU", func(f *Facts) { f.GOMAXPROCS = 1 }, Want{MaxConnections: 400000}, Warn,
			[]string{"of the 1 CPUs"}, []string{"ping_interval = 300", "activity_timeout = 120"}},
		{"capacity when no max", func(*Facts) {}, Want{}, OK,
			[]string{"idle keepalive of 1038091 connections"}, nil}, // fd budget of 1<<20
		{"CPUs unknown", func(f *Facts) { f.GOMAXPROCS, f.NumCPU = 0, 0 }, Want{MaxConnections: 5000000}, OK,
			[]string{"the number of CPUs is unknown"}, nil},
	}
	for _, tt := range tests {
		f := linuxFacts(1 << 20)
		tt.mutate(f)
		r := Plan(f, tt.want)
		fd := find(r, "keepalive")
		if fd == nil {
			t.Errorf("%s: no keepalive finding in %+v", tt.name, r.Findings)
			continue
		}
		if fd.Severity != tt.sev {
			t.Errorf("%s: severity %v, want %v: %s", tt.name, fd.Severity, tt.sev, fd.Message)
		}
		for _, m := range tt.msg {
			if !strings.Contains(fd.Message, m) {
				t.Errorf("%s: message lacks %q: %s", tt.name, m, fd.Message)
			}
		}
		var lines []string
		for _, fx := range fd.Fixes {
			lines = append(lines, fx.Lines...)
		}
		if len(lines) != len(tt.fixLines) {
			t.Errorf("%s: fix lines %q, want %q", tt.name, lines, tt.fixLines)
			continue
		}
		for i := range lines {
			if !strings.HasPrefix(lines[i], tt.fixLines[i]) {
				t.Errorf("%s: fix line %d %q, want %q", tt.name, i, lines[i], tt.fixLines[i])
			}
		}
		if r.Keepalive.Connections == 0 || r.Keepalive.ServerCores <= 0 {
			t.Errorf("%s: report keepalive %+v", tt.name, r.Keepalive)
		}
	}

	// The suggested cap keeps keepalive at or under the share.
	r := Plan(func() *Facts { f := linuxFacts(1 << 20); twoCPUs(f); return f }(),
		Want{MaxConnections: 3000000, PingInterval: 120, ActivityTimeout: 120})
	capped := fixValue(t, find(r, "keepalive"), "max_connections = ")
	if k := EstimateKeepalive(capped, 120, 120); k.ServerCores > KeepaliveCPUShare*2 ||
		EstimateKeepalive(capped+1000, 120, 120).ServerCores <= KeepaliveCPUShare*2 {
		t.Errorf("suggested max_connections %d gives %.4f cores on 2 CPUs", capped, k.ServerCores)
	}

	// No connections planned, no facts: no finding, an empty estimate.
	r = Plan(&Facts{}, Want{})
	if find(r, "keepalive") != nil || r.Keepalive.Connections != 0 {
		t.Errorf("keepalive without connections: %+v %+v", find(r, "keepalive"), r.Keepalive)
	}
	if !strings.Contains(r.String(), "keepalive CPU") {
		t.Errorf("no keepalive row:\n%s", r.String())
	}
	// Want's defaults are the configuration's.
	if w := Plan(linuxFacts(1<<20), Want{}).Want; w.PingInterval != 60 || w.ActivityTimeout != 30 {
		t.Errorf("default keepalive settings %d, %d", w.PingInterval, w.ActivityTimeout)
	}
}

func TestReportKeepaliveOutput(t *testing.T) {
	f := linuxFacts(1 << 20)
	f.GOMAXPROCS, f.NumCPU = 2, 2
	r := Plan(f, Want{MaxConnections: 1000000})
	s := r.String()
	for _, want := range []string{
		"keepalive CPU", "0.738 cores (44.", "1000000 idle connections, a ping every 30 s (bench/keepalive.sh)",
		"warn   keepalive:", "ping_interval = 300", "activity_timeout = 120",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
	b, err := r.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		CPUs      int `json:"cpus"`
		Keepalive struct {
			Connections     int     `json:"connections"`
			IntervalSeconds int     `json:"interval_seconds"`
			ServerMicros    float64 `json:"server_us_per_conn_minute"`
			ServerCores     float64 `json:"server_cores"`
			ClientCores     float64 `json:"client_cores"`
		} `json:"keepalive"`
		Want struct {
			PingInterval    int `json:"ping_interval"`
			ActivityTimeout int `json:"activity_timeout"`
		} `json:"want"`
	}
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	k := back.Keepalive
	if back.CPUs != 2 || k.Connections != 1000000 || k.IntervalSeconds != 30 || !near(k.ServerCores, 0.738, 0.001) ||
		!near(k.ServerMicros, 44.3, 0.1) || k.ClientCores <= 0 || back.Want.PingInterval != 60 || back.Want.ActivityTimeout != 30 {
		t.Errorf("JSON = %+v", back)
	}
}
