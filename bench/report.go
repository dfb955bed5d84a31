package bench

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes res as one JSON line.
func WriteJSON(w io.Writer, res *Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

func fmtUS(us int64) string {
	switch {
	case us >= 1_000_000:
		return fmt.Sprintf("%.2f s", float64(us)/1e6)
	case us >= 1000:
		return fmt.Sprintf("%.2f ms", float64(us)/1e3)
	default:
		return fmt.Sprintf("%d µs", us)
	}
}

func fmtSummary(s Summary) string {
	if s.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (n=%d)",
		fmtUS(s.P50), fmtUS(s.P90), fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max), s.Count)
}

// tableRows returns the human-readable rows of res.
func tableRows(res *Result) [][2]string {
	var rows [][2]string
	add := func(k, v string) { rows = append(rows, [2]string{k, v}) }
	add("scenario", fmt.Sprintf("%s against %s (client %s, %d worker processes)", res.Scenario, res.Target, res.Client, res.Workers))
	if res.TLS || res.APITLS {
		add("transport", transportDesc(res))
	}
	switch res.Scenario {
	case ScenarioAPI:
		add("HTTP clients", fmt.Sprint(res.Connections))
	case ScenarioChurn:
		add("lanes", fmt.Sprint(res.Connections))
	case ScenarioPresence:
		// See presenceRows.
	case ScenarioCross:
		add("subscribers", fmt.Sprintf("%d connected, %d failed, %d closed early (of %d) on %s", res.Connected, res.Failed, res.ClosedEarly, res.Connections, res.Target))
		add("connect", fmt.Sprintf("%.2f s, %.0f connects/s", res.ConnectS, res.ConnectsPerSec))
	default:
		add("connections", fmt.Sprintf("%d connected, %d failed, %d closed early (of %d)", res.Connected, res.Failed, res.ClosedEarly, res.Connections))
		add("connect", fmt.Sprintf("%.2f s, %.0f connects/s", res.ConnectS, res.ConnectsPerSec))
	}
	if res.ConnectLatency.Count > 0 && res.Presence != nil {
		add("connect", fmtSummary(res.ConnectLatency))
	} else if res.ConnectLatency.Count > 0 {
		add("connect+subscribe", fmtSummary(res.ConnectLatency))
	}
	if res.Presence != nil {
		presenceRows(res, add)
	} else if c := res.Cross; c != nil {
		pace := "unpaced"
		if res.Rate > 0 {
			pace = fmt.Sprintf("paced at %.0f/s", res.Rate)
		}
		add("HTTP triggers", fmt.Sprintf("to %s, %d keep-alive clients, %s; latency %s", c.APIServer, c.APIClients, pace, fmtSummary(res.TriggerLat)))
		add("events", fmt.Sprintf("%d sent in %.2f s: %d accepted (%.1f/s), %d refused with 503 (%d retries), %d other errors, %d unanswered",
			c.Sent, c.SendS, c.Accepted, c.AcceptedPerS, c.Refused503, c.Retries, c.OtherErrors, c.Unconfirmed))
		add("deliveries", fmt.Sprintf("%d of %d expected (%d subscribers x %d accepted), %d duplicates, last one %.2f s after the last trigger",
			res.Received, c.ExpectedDeliveries, c.Subscribers, c.Accepted, c.Duplicates, c.DrainS))
		add("lost", fmt.Sprintf("%d accepted events missed by some subscriber, %d missing deliveries", c.LostEvents, c.MissingDeliveries))
		if c.RefusedDelivered > 0 {
			add("refused yet delivered", fmt.Sprintf("%d events answered with an error reached a subscriber", c.RefusedDelivered))
		}
		add("delivery latency", fmtSummary(res.Latency))
	} else if res.Triggers > 0 || res.TriggerErrors > 0 {
		add("HTTP triggers", fmt.Sprintf("%d ok, %d failed (%d of them timed out, their events still expected), latency %s",
			res.Triggers, res.TriggerErrors, res.Unconfirmed, fmtSummary(res.TriggerLat)))
	}
	if res.Cross == nil && (res.Expected != 0 || res.Received != 0) {
		add("events", fmt.Sprintf("%d sent, %d deliveries expected, %d received", res.Events, res.Expected, res.Received))
		add("loss", fmt.Sprintf("%d (%.2f%%)", res.Loss, res.LossPct))
	}
	if res.Reconnect != nil {
		rows = append(rows, reconnectRows(res.Reconnect)...)
	}
	if res.HoldS > 0 {
		h := fmt.Sprintf("%.1f s", res.HoldS)
		if res.HoldEnd != "" {
			h += ", ended " + res.HoldEnd
		}
		add("hold", h)
	}
	if res.DrainEnd != "" {
		add("drain ended", res.DrainEnd)
	}
	if res.Scenario != ScenarioConnect && res.Scenario != ScenarioCross && res.Scenario != ScenarioPresence {
		add(plural(res.Op), fmt.Sprintf("%d in %.1f s = %.1f/s", res.Ops, res.DurationS, res.OpsPerSec))
		add(res.Op+" latency", fmtSummary(res.Latency))
	}
	if res.WireBytesPerDelivery > 0 {
		mode := "plain"
		if res.Deflate {
			mode = "permessage-deflate"
		}
		add("wire bytes per delivery", fmt.Sprintf("%.1f B (%s)", res.WireBytesPerDelivery, mode))
	}
	if res.ServerErrors > 0 {
		add("pusher:error received", fmt.Sprint(res.ServerErrors))
	}
	if s := res.Server; s != nil {
		if len(s.PIDs) > 1 {
			add("server PIDs", fmt.Sprintf("%v (figures summed)", s.PIDs))
		} else {
			add("server PID", fmt.Sprint(s.PID))
		}
		add("server RSS", fmt.Sprintf("%d KB -> %d KB", s.RSSBeforeKB, s.RSSAfterKB))
		if s.RSSPerConnB > 0 {
			add("server RSS per connection", fmt.Sprintf("%.0f B", s.RSSPerConnB))
		}
		if s.RSSHeldPerConnB > 0 {
			add("server RSS per connection after the hold", fmt.Sprintf("%.0f B (%d KB)", s.RSSHeldPerConnB, s.RSSHeldKB))
		}
		add("server CPU", fmt.Sprintf("%.2f s = %.2f µs per %s", s.CPUSeconds, s.CPUPerOpUS, res.Op))
	}
	add("client CPU", fmt.Sprintf("%.2f s", res.ClientCPUS))
	if res.ClientRSSConn > 0 {
		add("client RSS per connection", fmt.Sprintf("%.0f B", res.ClientRSSConn))
	}
	if res.TimedOut {
		add("TIMED OUT", "the run hit --timeout; figures are partial")
	}
	for _, e := range res.Errors {
		add("error", e)
	}
	return rows
}

// transportDesc says which connections use TLS and how.
func transportDesc(res *Result) string {
	var parts []string
	if res.TLS {
		parts = append(parts, "WebSocket over TLS (wss://)")
	} else if res.Scenario != ScenarioAPI {
		parts = append(parts, "WebSocket without TLS (ws://)")
	}
	if res.APITLS {
		parts = append(parts, "HTTP API over TLS (https://)")
	}
	if res.TLSResume {
		parts = append(parts, "shared session cache (resumption)")
	} else {
		parts = append(parts, "full handshake per connection")
	}
	return strings.Join(parts, ", ")
}

// WriteTable writes res as a two-column table.
func WriteTable(w io.Writer, res *Result) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, r := range tableRows(res) {
		fmt.Fprintf(tw, "%s\t%s\n", r[0], r[1])
	}
	return tw.Flush()
}

// reportData is what the HTML report embeds as JSON.
type reportData struct {
	Result *Result  `json:"result"`
	Series []Point  `json:"series"`
	Dist   []Bucket `json:"latency_distribution"`
}

// svgBars draws the latency distribution as bars (log-spaced buckets).
func svgBars(dist []Bucket) template.HTML {
	if len(dist) == 0 {
		return "<p>no latency samples</p>"
	}
	const W, H, pad = 760.0, 260.0, 40.0
	var maxC int64
	for _, b := range dist {
		maxC = max(maxC, b.Count)
	}
	bw := (W - 2*pad) / float64(len(dist))
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" role="img" aria-label="latency distribution">`, W, H+40)
	fmt.Fprintf(&sb, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333"/>`, pad, H, W-pad, H)
	for i, b := range dist {
		h := (H - 20) * float64(b.Count) / float64(maxC)
		x := pad + float64(i)*bw
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a78c2"><title>%s – %s: %d</title></rect>`,
			x+1, H-h, math.Max(bw-2, 1), h, fmtUS(b.From), fmtUS(b.To), b.Count)
		if i%max(1, len(dist)/8) == 0 {
			fmt.Fprintf(&sb, `<text x="%.1f" y="%.0f" font-size="11" text-anchor="middle">%s</text>`, x+bw/2, H+16, fmtUS(b.From))
		}
	}
	fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f" font-size="12" text-anchor="middle">latency (log scale)</text>`, W/2, H+34)
	fmt.Fprintf(&sb, `<text x="4" y="14" font-size="11">max %d</text>`, maxC)
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

// svgLine draws ops/s over time.
func svgLine(series []Point) template.HTML {
	if len(series) < 2 {
		return "<p>run too short for a time series</p>"
	}
	const W, H, pad = 760.0, 260.0, 50.0
	maxT, maxR := series[len(series)-1].T, 1.0
	for _, p := range series {
		maxR = math.Max(maxR, p.Rate)
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" role="img" aria-label="rate over time">`, W, H+40)
	fmt.Fprintf(&sb, `<line x1="%.0f" y1="%.0f" x2="%.0f" y2="%.0f" stroke="#333"/>`, pad, H, W-10, H)
	fmt.Fprintf(&sb, `<line x1="%.0f" y1="10" x2="%.0f" y2="%.0f" stroke="#333"/>`, pad, pad, H)
	var pts []string
	for _, p := range series {
		x := pad + (W-pad-10)*p.T/math.Max(maxT, 1)
		y := H - (H-20)*p.Rate/maxR
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, y))
	}
	fmt.Fprintf(&sb, `<polyline fill="none" stroke="#c2544a" stroke-width="2" points="%s"/>`, strings.Join(pts, " "))
	fmt.Fprintf(&sb, `<text x="4" y="20" font-size="11">%.0f/s</text>`, maxR)
	fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f" font-size="11" text-anchor="end">%.0f s</text>`, W-10, H+16, maxT)
	fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f" font-size="12" text-anchor="middle">seconds since start</text>`, W/2, H+34)
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

var reportTmpl = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>reverb bench: {{.R.Scenario}} against {{.R.Target}}</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;max-width:900px}table{border-collapse:collapse}
td{border-bottom:1px solid #ddd;padding:3px 10px;vertical-align:top}td:first-child{font-weight:600;white-space:nowrap}</style>
</head><body>
<h1>reverb bench: {{.R.Scenario}}{{if .R.TLS}} over TLS{{end}}</h1>
<p>Server {{if .R.TLS}}wss://{{end}}{{.R.Target}}, started {{.R.Start.Format "2006-01-02 15:04:05 MST"}}.</p>
<table>{{range .Rows}}<tr><td>{{index . 0}}</td><td>{{index . 1}}</td></tr>{{end}}</table>
<h2>{{.R.Op}} latency distribution</h2>
{{.Bars}}
<h2>{{.RateLabel}} per second over time</h2>
{{.Line}}
<script type="application/json" id="bench-data">{{.Data}}</script>
</body></html>
`))

// WriteHTML writes a self-contained HTML report of res: the summary table,
// the latency distribution and the operation rate over time as inline SVG,
// and all the data as JSON in a script element with id "bench-data".
func WriteHTML(w io.Writer, res *Result) error {
	data, err := json.Marshal(reportData{Result: res, Series: res.Series, Dist: res.Dist})
	if err != nil {
		return err
	}
	label := plural(res.Op)
	switch res.Scenario {
	case ScenarioConnect:
		label = "connects"
	case ScenarioCross:
		label = "deliveries"
	}
	return reportTmpl.Execute(w, map[string]any{
		"R":         res,
		"Rows":      tableRows(res),
		"Bars":      svgBars(res.Dist),
		"Line":      svgLine(res.Series),
		"RateLabel": label,
		"Data":      template.JS(data),
	})
}

// plural names a count of op.
func plural(op string) string {
	switch op {
	case "":
		return "operations"
	case "delivery":
		return "deliveries"
	case "connect+subscribe":
		return "connects"
	}
	return op + "s"
}
