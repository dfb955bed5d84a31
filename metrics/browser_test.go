package metrics

import (
	"context"
	"fmt"
	"html"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// findChromium returns the path of a Chromium-like browser. Without one the
// test is skipped, unless CI is set: then a missing browser fails it.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" && ci != "0" {
		t.Fatal("chromium not found and CI is set: install it (apt-get install -y chromium) or set CHROMIUM")
	}
	t.Skip("chromium not found: install it (apt-get install -y chromium) to run the dashboard browser test")
	return ""
}

// headless runs the browser on url with extra flags and returns its stdout.
func headless(t *testing.T, bin, url string, extra ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + t.TempDir(),
	}, extra...)
	cmd := exec.CommandContext(ctx, bin, append(args, url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", bin, err, stderr.String())
	}
	return string(out)
}

var (
	reTag      = regexp.MustCompile(`<[^>]*>`)
	reSpaces   = regexp.MustCompile(`\s+`)
	reMemberID = regexp.MustCompile(`class="member" data-user="([^"]*)"`)
)

// text returns the visible text of an HTML fragment.
func text(fragment string) string {
	return strings.TrimSpace(reSpaces.ReplaceAllString(html.UnescapeString(reTag.ReplaceAllString(fragment, " ")), " "))
}

// byID returns the text of the element with that id, or "".
func byID(dom, id string) string {
	m := regexp.MustCompile(`id="` + regexp.QuoteMeta(id) + `"[^>]*>(.*?)</`).FindStringSubmatch(dom)
	if m == nil {
		return ""
	}
	return text(m[1])
}

// row returns the cells' texts of the table row carrying attr="value".
func row(dom, attr, value string) (cells []string, raw string) {
	m := regexp.MustCompile(`<tr[^>]*` + attr + `="` + regexp.QuoteMeta(value) + `"[^>]*>(.*?)</tr>`).FindStringSubmatch(dom)
	if m == nil {
		return nil, ""
	}
	for _, td := range regexp.MustCompile(`<td[^>]*>(.*?)</td>`).FindAllStringSubmatch(m[1], -1) {
		cells = append(cells, text(td[1]))
	}
	return cells, m[1]
}

// checkDashboard returns what the rendered page gets wrong, or "".
func checkDashboard(dom, wsAddr string) string {
	var bad []string
	expect := func(what, got, want string) {
		if got != want {
			bad = append(bad, what+": got "+strconvQuote(got)+", want "+strconvQuote(want))
		}
	}
	expect("status", byID(dom, "status"), "ready")
	expect("node id", byID(dom, "node-id"), "node-a")
	expect("connections", byID(dom, "kpi-connections"), "4")
	expect("websocket clients", byID(dom, "kpi-app-connections"), "4")
	expect("subscribed", byID(dom, "kpi-subscribed"), "4")
	expect("channels", byID(dom, "kpi-channels"), "2")

	cells, raw := row(dom, "data-channel", "presence-room")
	if len(cells) != 5 {
		bad = append(bad, "presence-room row: "+strconvQuote(strings.Join(cells, " | ")))
	} else {
		expect("presence-room name", cells[0], "presence-room")
		expect("presence-room type", cells[1], "presence")
		expect("presence-room subscribers", cells[2], "3")
		expect("presence-room users", cells[3], "2")
		expect("presence-room members text", cells[4], "u1 u2")
		var ids []string
		for _, m := range reMemberID.FindAllStringSubmatch(raw, -1) {
			ids = append(ids, m[1])
		}
		expect("presence-room member ids", strings.Join(ids, ","), "u1,u2")
	}
	cells, _ = row(dom, "data-channel", "news")
	if len(cells) != 5 {
		bad = append(bad, "news row: "+strconvQuote(strings.Join(cells, " | ")))
	} else {
		expect("news type", cells[1], "public")
		expect("news subscribers", cells[2], "1")
		expect("news users", cells[3], "—")
	}
	cells, _ = row(dom, "data-node", "node-a")
	if len(cells) != 8 {
		bad = append(bad, "node row: "+strconvQuote(strings.Join(cells, " | ")))
	} else {
		expect("node address", cells[2], wsAddr)
		expect("node version", cells[3], "v9.9.9-test")
		expect("node loops", cells[5], "2")
		expect("node connections", cells[6], "4")
	}
	// Two apps, each with its card and two charts drawn.
	if n := strings.Count(dom, `<article class="card app"`); n != 2 {
		bad = append(bad, "app cards: "+itoa(n))
	}
	if n := strings.Count(dom, `<polyline class="line"`); n < 4 {
		bad = append(bad, "chart lines drawn: "+itoa(n))
	}
	return strings.Join(bad, "; ")
}

func strconvQuote(s string) string { return `"` + s + `"` }

// TestDashboardInBrowser renders the dashboard in headless Chromium against
// a server with live traffic and checks the numbers it shows.
func TestDashboardInBrowser(t *testing.T) {
	bin := findChromium(t)
	n := startNode(t, Options{CacheFor: 100 * time.Millisecond})
	for _, u := range []string{"u1", "u2", "u1"} {
		c := n.connect(appKey)
		c.join("presence-room", u)
	}
	pub := n.connect(appKey)
	pub.Subscribe("news")
	for range 3 {
		if code := n.trigger("news", "tick", "x"); code != 200 {
			t.Fatalf("trigger: %d", code)
		}
		pub.Expect("tick")
	}
	n.expectSamples(map[string]float64{"reverb_connections": 4, `reverb_app_subscribed_connections{app_id="1"}`: 4})

	url := n.metrics + "/"
	var dom, problem string
	// The page polls every second; virtual time runs the polls without
	// waiting for them in real time. A slow machine may need a second try.
	for _, budget := range []string{"4000", "10000", "20000"} {
		dom = headless(t, bin, url, "--virtual-time-budget="+budget, "--dump-dom")
		if problem = checkDashboard(dom, n.wsAddr); problem == "" {
			break
		}
		t.Logf("virtual time %s ms: %s", budget, problem)
	}
	if problem != "" {
		t.Fatalf("dashboard shows the wrong figures: %s\n%s", problem, dom)
	}
	if path := os.Getenv("REVERB_DASHBOARD_SCREENSHOT"); path != "" {
		headless(t, bin, url, "--virtual-time-budget=8000", "--hide-scrollbars",
			"--window-size=1280,900", "--screenshot="+path)
		if st, err := os.Stat(path); err != nil || st.Size() == 0 {
			t.Fatalf("screenshot %s: %v", path, err)
		}
		t.Logf("screenshot written to %s", path)
	}
}

// largeStats serves /api/stats with large synthetic figures and every other
// path from the real listener: each poll is one second after the previous
// one; app "1" holds 98,765 connections and receives 45,000 and sends
// 1,234,567 messages a second, app "2" stays below one message a second.
type largeStats struct {
	real http.Handler
	mu   sync.Mutex
	seq  int64
}

func (l *largeStats) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/api/stats" {
		l.real.ServeHTTP(w, r)
		return
	}
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(seq) * time.Second)
	apps := []appJSON{
		{AppID: appID, Connections: 98765, Subscribed: 91234, Channels: 3,
			MessagesReceived: seq * 45000, MessagesSent: seq * 1234567, BytesReceived: seq * 4500000, BytesSent: seq * 123456700},
		{AppID: app2ID, Connections: 3, Subscribed: 2, Channels: 1, MessagesReceived: seq * 2 / 5, MessagesSent: seq * 2 / 5},
	}
	out := statsJSON{Time: now.UnixMilli(), Node: "node-a", Status: "ready", Connections: 98768, Loops: 2, Apps: apps,
		Nodes: []Node{{ID: "node-a", Self: true, Version: "v9.9.9-test", Loops: 2, Connections: 98768, Status: "ready",
			UptimeSeconds: float64(3600 + seq)}}}
	for _, a := range apps {
		out.Totals.add(a)
	}
	writeJSON(w, http.StatusOK, out)
}

var (
	reChart     = regexp.MustCompile(`(?s)<svg class="chart"([^>]*)>(.*?)</svg>`)
	reAxisLabel = regexp.MustCompile(`<text class="axis (x|y)"([^>]*)>([^<]*)</text>`)
)

// attrFloat returns the number in attribute name of a tag's attributes.
func attrFloat(attrs, name string) (float64, bool) {
	m := regexp.MustCompile(`\b` + name + `="([^"]*)"`).FindStringSubmatch(attrs)
	if m == nil {
		return 0, false
	}
	f, err := strconv.ParseFloat(m[1], 64)
	return f, err == nil
}

// checkChartLabels returns what is wrong with the charts' axis labels in
// the rendered page, or "": each chart must have its three y-axis labels
// and every label must lie entirely inside its chart, as rendered
// (data-left and data-right against data-width, recorded by the page from
// the browser's layout). want lists y-axis label texts that must appear.
func checkChartLabels(dom string, want ...string) string {
	var bad []string
	charts := reChart.FindAllStringSubmatch(dom, -1)
	if len(charts) < 4 {
		return fmt.Sprintf("%d charts drawn, want 4", len(charts))
	}
	seen := map[string]bool{}
	for i, c := range charts {
		width, ok := attrFloat(c[1], "data-width")
		if !ok || width < 100 {
			bad = append(bad, fmt.Sprintf("chart %d: no label layout recorded (data-width %q)", i, c[1]))
			continue
		}
		ys := 0
		for _, l := range reAxisLabel.FindAllStringSubmatch(c[2], -1) {
			axis, attrs, txt := l[1], l[2], html.UnescapeString(l[3])
			left, ok1 := attrFloat(attrs, "data-left")
			right, ok2 := attrFloat(attrs, "data-right")
			switch {
			case !ok1 || !ok2:
				bad = append(bad, fmt.Sprintf("chart %d: label %q has no recorded layout", i, txt))
			case txt == "" || right-left < 1:
				bad = append(bad, fmt.Sprintf("chart %d: empty label %q", i, txt))
			case left < 0 || right > width:
				bad = append(bad, fmt.Sprintf("chart %d (%.0f px wide): %s-axis label %q spans %.1f..%.1f px: clipped", i, width, axis, txt, left, right))
			}
			if axis == "y" {
				ys++
				seen[txt] = true
			}
		}
		if ys != 3 {
			bad = append(bad, fmt.Sprintf("chart %d: %d y-axis labels, want 3", i, ys))
		}
	}
	for _, w := range want {
		if !seen[w] {
			bad = append(bad, fmt.Sprintf("no y-axis label %q (labels: %v)", w, slices.Sorted(maps.Keys(seen))))
		}
	}
	return strings.Join(bad, "; ")
}

// TestDashboardChartLabelsFit renders the dashboard in headless Chromium
// with millions of messages a second, at the width where the y-axis labels
// of the messages chart used to be cut ("0,000" for "10,000") and at a
// narrow one, and checks from the DOM that every axis label lies entirely
// inside its chart.
func TestDashboardChartLabelsFit(t *testing.T) {
	bin := findChromium(t)
	n := startNode(t, Options{})
	srv := httptest.NewServer(&largeStats{real: n.m.Handler()})
	defer srv.Close()
	url := srv.URL + "/"
	for _, size := range []string{"1400,900", "600,900"} {
		t.Run(size, func(t *testing.T) {
			var dom, problem string
			for _, budget := range []string{"5000", "10000", "20000"} {
				dom = headless(t, bin, url, "--window-size="+size, "--virtual-time-budget="+budget, "--dump-dom")
				// 98,765 connections, 1,234,567 messages/s out: tops of 100K and
				// 2M; app "2" below one message a second: 1 and 0.5.
				if problem = checkChartLabels(dom, "100K", "50K", "2M", "1M", "0.5", "0"); problem == "" {
					break
				}
				t.Logf("virtual time %s ms: %s", budget, problem)
			}
			if problem != "" {
				t.Fatalf("chart labels: %s", problem)
			}
		})
	}
	if path := os.Getenv("REVERB_DASHBOARD_LARGE_SCREENSHOT"); path != "" {
		headless(t, bin, url, "--virtual-time-budget=8000", "--hide-scrollbars", "--window-size=1400,900", "--screenshot="+path)
		t.Logf("screenshot written to %s", path)
	}
}
