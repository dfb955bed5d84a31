package bench

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSummarizeAndMerge(t *testing.T) {
	a, b := newHist(), newHist()
	for v := int64(1); v <= 1000; v++ {
		if v%2 == 0 {
			recordLatency(a, time.Duration(v)*time.Microsecond)
		} else {
			recordLatency(b, time.Duration(v)*time.Microsecond)
		}
	}
	all := newHist()
	mergeSnapshot(all, a.Export())
	mergeSnapshot(all, b.Export())
	s := Summarize(all)
	if s.Count != 1000 || s.Min != 1 || s.Max != 1000 {
		t.Fatalf("count/min/max: %+v", s)
	}
	near := func(name string, got, want int64) {
		t.Helper()
		if got < want-2 || got > want+2 {
			t.Errorf("%s = %d, want %d (±2)", name, got, want)
		}
	}
	near("p50", s.P50, 500)
	near("p90", s.P90, 900)
	near("p99", s.P99, 990)
	near("p99.9", s.P999, 999)
	if s.Mean < 499 || s.Mean > 502 {
		t.Errorf("mean = %v", s.Mean)
	}
	if z := Summarize(newHist()); z != (Summary{}) {
		t.Errorf("empty histogram: %+v", z)
	}
	// Out-of-range values are clamped, not dropped.
	recordLatency(all, -time.Second)
	recordLatency(all, time.Hour)
	if s := Summarize(all); s.Count != 1002 || s.Min != 1 || s.Max < histMax-histMax/1000 {
		t.Errorf("clamping: %+v", s)
	}
	var n int64
	dist := Distribution(all, 10)
	for i, bk := range dist {
		n += bk.Count
		if bk.To <= bk.From || (i > 0 && bk.From != dist[i-1].To) {
			t.Fatalf("bucket %d not contiguous: %+v", i, dist)
		}
	}
	if n != 1002 {
		t.Fatalf("distribution holds %d values, want 1002", n)
	}
}

func TestPerSecond(t *testing.T) {
	if got := perSecond(1500, 3*time.Second); got != 500 {
		t.Fatalf("perSecond = %v", got)
	}
	if got := perSecond(5, 0); got != 0 {
		t.Fatalf("perSecond(0) = %v", got)
	}
}

func TestEventDataTimestamp(t *testing.T) {
	now := time.Unix(1700000000, 123456789)
	d := eventData(now, 100)
	if len(d) != 100 {
		t.Fatalf("len %d, want 100", len(d))
	}
	// As the server relays it: inside a JSON string inside the message.
	msg, _ := json.Marshal(map[string]string{"event": benchEvent, "channel": "c", "data": string(d)})
	got, ok := sentAt(msg)
	if !ok || !got.Equal(now) {
		t.Fatalf("sentAt = %v %v, want %v", got, ok, now)
	}
	if _, ok := sentAt([]byte(`{"event":"pusher:pong"}`)); ok {
		t.Fatal("sentAt found a timestamp in a pong")
	}
	if len(eventData(now, 0)) == 0 {
		t.Fatal("a tiny payload must still carry the timestamp")
	}
}

func TestParseProc(t *testing.T) {
	rss, err := parseVmRSS([]byte("Name:\treverb\nVmPeak:\t  9000 kB\nVmRSS:\t   12345 kB\nThreads:\t5\n"))
	if err != nil || rss != 12345 {
		t.Fatalf("VmRSS = %d, %v", rss, err)
	}
	if _, err := parseVmRSS([]byte("Name: x\n")); err == nil {
		t.Fatal("missing VmRSS accepted")
	}
	// The command name may hold spaces and parentheses.
	stat := "4242 (we ird) (name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 5 0 100 0 0"
	cpu, err := parseStatCPU([]byte(stat))
	if err != nil || cpu != 3250*time.Millisecond {
		t.Fatalf("cpu = %v, %v; want 3.25s", cpu, err)
	}
	if _, err := parseStatCPU([]byte("1 (x) S 1 2")); err == nil {
		t.Fatal("short stat accepted")
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("ReadProc of a missing PID succeeded")
	}
}

func TestParseSourceIPs(t *testing.T) {
	got, err := ParseSourceIPs("127.0.0.2-127.0.0.4, 127.0.1.1,127.0.0.255-127.0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	var s []string
	for _, a := range got {
		s = append(s, a.String())
	}
	want := "127.0.0.2 127.0.0.3 127.0.0.4 127.0.1.1 127.0.0.255 127.0.1.0"
	if strings.Join(s, " ") != want {
		t.Fatalf("got %v, want %s", s, want)
	}
	if ips, err := ParseSourceIPs(""); err != nil || len(ips) != 0 {
		t.Fatalf("empty: %v %v", ips, err)
	}
	for _, bad := range []string{"x", "127.0.0.5-127.0.0.1", "127.0.0.1-::1", "127.0.0.1-y", "10.0.0.0-10.2.0.0"} {
		if _, err := ParseSourceIPs(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestParseArgs(t *testing.T) {
	noServerConfig(t) // the app defaults to the built-in one
	c, err := ParseArgs([]string{"--scenario", "fanout", "--port", "6001", "--source-ips", "127.0.0.2-127.0.0.3", "--json"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Scenario != ScenarioFanout || c.Port != 6001 || c.Connections != 1000 || c.Channels != 1 || c.Rate != 4 ||
		c.Payload != 100 || !c.JSON || c.Client != "gnet" || len(c.SourceIPs) != 2 || c.Workers != 0 ||
		c.Timeout != c.Duration+2*time.Minute || c.AppID != "local" || c.Key != "local-key" || c.Secret != "local-secret" || c.Addr() != "127.0.0.1:6001" {
		t.Fatalf("fanout defaults: %+v", c)
	}
	if c.SourceIPs[1] != netip.MustParseAddr("127.0.0.3") {
		t.Fatalf("source ips %v", c.SourceIPs)
	}
	c, err = ParseArgs([]string{"--scenario=connect", "--connections=40000", "--server-pid=12", "--timeout=30s", "--rate=500"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Channels != 100 || c.Workers != 3 || c.ServerPID != 12 || c.Timeout != 30*time.Second || c.Rate != 500 {
		t.Fatalf("connect: %+v", c)
	}
	c, err = ParseArgs([]string{"--scenario", "client-events", "--connections", "7", "--group", "3"}, io.Discard)
	if err != nil || c.Connections != 9 || c.Rate != 2 {
		t.Fatalf("client-events rounds connections up to whole groups: %+v %v", c, err)
	}
	c, err = ParseArgs([]string{"--scenario", "api", "--connections", "40000"}, io.Discard)
	if err != nil || c.Connections != 40000 || c.Workers != 0 {
		t.Fatalf("api never uses workers: %+v %v", c, err)
	}
	for _, bad := range [][]string{
		{"--scenario", "nope"},
		{"--port", "0"},
		{"--scenario", "client-events", "--rate", "11"},
		{"--scenario", "fanout", "--channels", "101"},
		{"--client", "threads"},
		{"--source-ips", "127.0.0.9-127.0.0.1"},
		{"--progress", "maybe"},
		{"--connections", "-1"},
		{"extra"},
		{"--no-such-flag"},
	} {
		if _, err := ParseArgs(bad, io.Discard); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestReportOutputs(t *testing.T) {
	res := &Result{
		Scenario: ScenarioFanout, Target: "127.0.0.1:1", Client: "gnet", Connections: 3, Op: "delivery",
		Ops: 30, OpsPerSec: 15, Expected: 30, Received: 29, Loss: 1, LossPct: 3.33,
		Latency: Summary{Count: 29, P50: 120, P99: 4500, Max: 5000},
		Server:  &ServerStats{PID: 7, CPUSeconds: 0.5, CPUPerOpUS: 17.2},
		Series:  []Point{{T: 1, Connected: 3, Rate: 10}, {T: 2, Connected: 3, Rate: 19}},
		Dist:    []Bucket{{From: 100, To: 126, Count: 20}, {From: 126, To: 158, Count: 9}},
		Start:   time.Unix(1700000000, 0),
	}
	var html bytes.Buffer
	if err := WriteHTML(&html, res); err != nil {
		t.Fatal(err)
	}
	h := html.String()
	for _, want := range []string{"<!DOCTYPE html>", "<svg", "<polyline", "<rect", "deliveries per second", "loss"} {
		if !strings.Contains(h, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if strings.Contains(h, "http://") && strings.Contains(h, "<script src") {
		t.Error("report loads an external script")
	}
	m := regexp.MustCompile(`(?s)<script type="application/json" id="bench-data">(.*?)</script>`).FindStringSubmatch(h)
	if m == nil {
		t.Fatal("no bench-data script")
	}
	var data struct {
		Result map[string]any `json:"result"`
		Series []Point        `json:"series"`
		Dist   []Bucket       `json:"latency_distribution"`
	}
	if err := json.Unmarshal([]byte(m[1]), &data); err != nil {
		t.Fatalf("bench-data is not JSON: %v\n%s", err, m[1])
	}
	if data.Result["loss"].(float64) != 1 || len(data.Series) != 2 || data.Series[1].Rate != 19 ||
		len(data.Dist) != 2 || data.Dist[1].Count != 9 {
		t.Fatalf("report data: %+v", data)
	}
	var js, tbl bytes.Buffer
	if err := WriteJSON(&js, res); err != nil {
		t.Fatal(err)
	}
	if bytes.Count(js.Bytes(), []byte("\n")) != 1 || !json.Valid(js.Bytes()) {
		t.Fatalf("WriteJSON: %q", js.String())
	}
	if strings.Contains(js.String(), "series") {
		t.Error("the JSON line carries the time series")
	}
	_ = WriteTable(&tbl, res)
	if !strings.Contains(tbl.String(), "loss") || !strings.Contains(tbl.String(), "17.20 µs per delivery") {
		t.Fatalf("table:\n%s", tbl.String())
	}
}
