package limits

import (
	"fmt"
	"math"
)

// Keepalive CPU model: what idle connections cost through their pings.
//
// An idle connection costs one ping round trip (pusher:ping and
// pusher:pong, or a WebSocket ping and pong) per keepalive interval. The
// server pings a connection after its app's ping_interval seconds without
// inbound traffic; Pusher clients ping after activity_timeout seconds (sent
// to them in pusher:connection_established) without hearing from the
// server. Whichever fires first resets the other side's silence, so the
// interval is min(ping_interval, activity_timeout).
//
// CPU per connection per minute = fixed + per ping × pings per minute. The
// constants are a fit of two measurements on a 2-core machine, 15,000 idle
// subscribed connections over loopback, server and load client on the same
// machine (bench/keepalive.sh; bench/RESULTS.md, "Keepalive cost of idle
// connections", the rerun with the sessions' timing wheel), CPU as
// utime+stime per connection per minute:
//
//	interval   server    bench client
//	30 s       44.3 µs   42.0 µs
//	120 s      20.0 µs   16.3 µs
//
// The per-ping cost includes the kernel's loopback work on both ends. The
// fixed part is what the fit leaves apart from the pings (the runtime's own
// timers and the once-a-second tick among it; the sessions are looked at
// once per ping interval by a timing wheel, not every second). To update
// the model, rerun `OUT=/tmp/bench-keepalive bench/keepalive.sh` and solve
// the two equations again: per ping = (c30 - c120) / 1.5 and fixed = c120
// - 0.5 × per ping.
const (
	// ServerMicrosPerPing is the server CPU (µs) of one ping round trip.
	ServerMicrosPerPing = 16.2
	// ServerMicrosPerConnMinute is the server CPU (µs) per idle connection
	// per minute that does not depend on the pings.
	ServerMicrosPerConnMinute = 11.9
	// ClientMicrosPerPing is the client CPU (µs) of one ping round trip,
	// measured with the Go bench client (reverb bench); browsers running
	// pusher-js spend more, but on their own machines.
	ClientMicrosPerPing = 17.1
	// ClientMicrosPerConnMinute is the client CPU (µs) per idle connection
	// per minute that does not depend on the pings.
	ClientMicrosPerConnMinute = 7.7
)

// Keepalive defaults and thresholds used by Plan.
const (
	// DefaultPingInterval and DefaultActivityTimeout (seconds) are the
	// configuration's defaults, assumed when Want leaves them at 0.
	DefaultPingInterval    = 60
	DefaultActivityTimeout = 30
	// RecommendedKeepaliveSeconds is the activity_timeout recommended for
	// large deployments: Pusher's own default, 2.2 times cheaper than 30 s.
	RecommendedKeepaliveSeconds = 120
	// RecommendedPingInterval is the ping_interval that goes with it: above
	// the activity timeout (2.5 times, the shape of Reverb's defaults 30 and
	// 60), so that the clients ping first and an idle connection costs one
	// round trip per activity_timeout, not two.
	RecommendedPingInterval = 300
	// KeepaliveCPUShare is the share of the node's CPUs above which Plan
	// warns that keepalive alone takes too much of them.
	KeepaliveCPUShare = 0.25
)

// Keepalive is the CPU estimate of EstimateKeepalive for idle connections.
type Keepalive struct {
	// Connections is the number of connections estimated for.
	Connections int `json:"connections"`
	// PingInterval and ActivityTimeout are the settings (seconds) estimated
	// for; 0 or less means that side never pings.
	PingInterval    int `json:"ping_interval"`
	ActivityTimeout int `json:"activity_timeout"`
	// IntervalSeconds is min(PingInterval, ActivityTimeout) of those set:
	// the seconds between two ping round trips of an idle connection. 0
	// when neither side pings.
	IntervalSeconds int `json:"interval_seconds"`
	// PingsPerMinute is 60 / IntervalSeconds (0 when neither side pings).
	PingsPerMinute float64 `json:"pings_per_minute"`
	// ServerMicrosPerConnMinute is the server CPU (µs) per connection per
	// minute, and ServerCores that for all the connections, in cores.
	ServerMicrosPerConnMinute float64 `json:"server_us_per_conn_minute"`
	ServerCores               float64 `json:"server_cores"`
	// ClientMicrosPerConnMinute and ClientCores are the same for the
	// clients (as measured with the Go bench client), all of them together.
	ClientMicrosPerConnMinute float64 `json:"client_us_per_conn_minute"`
	ClientCores               float64 `json:"client_cores"`
}

// EstimateKeepalive estimates the CPU that conns idle connections cost
// through their pings when the server pings after pingInterval seconds of
// silence and the clients after activityTimeout seconds: one round trip
// per min(pingInterval, activityTimeout), with the model constants above.
// A non-positive setting means that side never pings. Goroutine-safe (a
// pure function).
func EstimateKeepalive(conns, pingInterval, activityTimeout int) Keepalive {
	k := Keepalive{Connections: max(conns, 0), PingInterval: pingInterval, ActivityTimeout: activityTimeout}
	switch {
	case pingInterval > 0 && activityTimeout > 0:
		k.IntervalSeconds = min(pingInterval, activityTimeout)
	case pingInterval > 0:
		k.IntervalSeconds = pingInterval
	case activityTimeout > 0:
		k.IntervalSeconds = activityTimeout
	}
	if k.IntervalSeconds > 0 {
		k.PingsPerMinute = 60 / float64(k.IntervalSeconds)
	}
	k.ServerMicrosPerConnMinute = ServerMicrosPerConnMinute + ServerMicrosPerPing*k.PingsPerMinute
	k.ClientMicrosPerConnMinute = ClientMicrosPerConnMinute + ClientMicrosPerPing*k.PingsPerMinute
	k.ServerCores = coresFor(k.Connections, k.ServerMicrosPerConnMinute)
	k.ClientCores = coresFor(k.Connections, k.ClientMicrosPerConnMinute)
	return k
}

// coresFor is the CPU (cores) of conns connections at perConn µs each per
// minute.
func coresFor(conns int, perConn float64) float64 {
	return float64(conns) * perConn / 60e6
}

// connsFor is the number of connections at perConn µs each per minute that
// cores cores carry.
func connsFor(cores, perConn float64) int {
	if perConn <= 0 {
		return math.MaxInt
	}
	return int(min(cores*60e6/perConn, 1<<53))
}

// formatCores formats a number of cores with about three significant
// digits: "0.0041", "0.411", "1.00", "12.3".
func formatCores(c float64) string {
	switch {
	case c == 0:
		return "0"
	case c < 0.01:
		return fmt.Sprintf("%.4f", c)
	case c < 1:
		return fmt.Sprintf("%.3f", c)
	case c < 10:
		return fmt.Sprintf("%.2f", c)
	}
	return fmt.Sprintf("%.1f", c)
}

// String is a one-line summary: "0.33 cores for 1000000 connections, 20.0
// µs per connection per minute, one ping round trip every 120 s".
func (k Keepalive) String() string {
	every := "no pings"
	if k.IntervalSeconds > 0 {
		every = fmt.Sprintf("one ping round trip every %d s", k.IntervalSeconds)
	}
	return fmt.Sprintf("%s cores for %d connections, %.1f µs per connection per minute, %s",
		formatCores(k.ServerCores), k.Connections, k.ServerMicrosPerConnMinute, every)
}

// cpus is the number of CPUs the server can use: GOMAXPROCS (which Go
// derives from NumCPU and the cgroup CPU limit), else NumCPU; 0 if unknown.
func (f *Facts) cpus() int {
	switch {
	case f.GOMAXPROCS > 0 && f.NumCPU > 0:
		return min(f.GOMAXPROCS, f.NumCPU)
	case f.GOMAXPROCS > 0:
		return f.GOMAXPROCS
	}
	return max(f.NumCPU, 0)
}

func (r *Report) checkKeepalive(planned int) {
	w := r.Want
	k := EstimateKeepalive(planned, w.PingInterval, w.ActivityTimeout)
	r.Keepalive = k
	if planned <= 0 {
		return
	}
	setting := fmt.Sprintf("one ping round trip every %d s (min of ping_interval %d and activity_timeout %d)",
		k.IntervalSeconds, w.PingInterval, w.ActivityTimeout)
	what := fmt.Sprintf("idle keepalive of %d connections, %s, costs about %.1f µs of server CPU per connection per minute: %s cores",
		planned, setting, k.ServerMicrosPerConnMinute, formatCores(k.ServerCores))
	if r.CPUs <= 0 {
		r.add(OK, "keepalive", what+" (the number of CPUs is unknown).")
		return
	}
	share := k.ServerCores / float64(r.CPUs)
	what += fmt.Sprintf(", %.1f%% of the %d CPUs", 100*share, r.CPUs)
	if share <= KeepaliveCPUShare {
		r.add(OK, "keepalive", what+".")
		return
	}
	// Raise both settings to the recommended interval (never lower them),
	// then cap the connections or add CPUs for what remains.
	pi := max(w.PingInterval, RecommendedPingInterval)
	at := max(w.ActivityTimeout, RecommendedKeepaliveSeconds)
	better := EstimateKeepalive(planned, pi, at)
	cpusNeeded := int(math.Ceil(better.ServerCores / KeepaliveCPUShare))
	var fixes []Fix
	msg := fmt.Sprintf("%s, more than %.0f%%: keepalive alone takes CPU that broadcasts need.", what, 100*KeepaliveCPUShare)
	if better.IntervalSeconds > k.IntervalSeconds {
		msg += fmt.Sprintf(" At ping_interval %d and activity_timeout %d it would cost %s cores.", pi, at, formatCores(better.ServerCores))
		fixes = append(fixes, Fix{
			Where: fmt.Sprintf("reverb.toml, every [[apps]] table (Pusher's default activity_timeout; the server then "+
				"finds a dead connection after up to %d s plus pong_timeout)", pi),
			Lines: []string{fmt.Sprintf("ping_interval = %d", pi), fmt.Sprintf("activity_timeout = %d", at)}})
	}
	if better.ServerCores/float64(r.CPUs) > KeepaliveCPUShare {
		even := ""
		if better.IntervalSeconds > k.IntervalSeconds {
			even = "Even then, keeping"
		} else {
			even = "Keeping"
		}
		msg += fmt.Sprintf(" %s it under %.0f%% needs %d CPUs.", even, 100*KeepaliveCPUShare, cpusNeeded)
		fixes = append(fixes, Fix{
			Where: fmt.Sprintf("or give the node %d CPUs, or cap its connections (at a %d s interval)", cpusNeeded, better.IntervalSeconds),
			Lines: []string{"[server]", fmt.Sprintf("max_connections = %d",
				connsFor(KeepaliveCPUShare*float64(r.CPUs), better.ServerMicrosPerConnMinute))}})
	}
	r.add(Warn, "keepalive", msg, fixes...)
}
