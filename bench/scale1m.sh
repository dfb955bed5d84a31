#!/usr/bin/env bash
# The one-machine scale run: NODES server processes sharing one port with
# reuse_port and one Redis, CONNS connections from `reverb bench` worker
# processes over source addresses 127.0.0.2.., all subscribed to one channel,
# then, once they are held, a presence check and a rolling restart of some
# nodes while the server is otherwise quiet (the bench's --hold, which ends
# once the restarted nodes have exited and their clients are back), then
# broadcasts to all of them through the HTTP API, while the API's
# cluster-wide reads are checked against the known totals.
#
#   bench/scale1m.sh                       # 58 nodes, 1,000,000 connections
#   NODES=6 CONNS=100000 bench/scale1m.sh  # the 100k run
#
# Knobs (environment): NODES, CONNS, WORKERS, CONNECT_RATE, EVENT_RATE,
# DURATION, API_TIMEOUT, ACTIVITY_TIMEOUT, SOURCE_IPS, PORT, REDIS_PORT, OUT, PRESENCE
# (members of the presence check, 0 to skip), PRESENCE_TIMEOUT, RESTART (nodes to drain and
# replace, one after another, 0 to skip), RESTART_OVERLAP, DRAIN_NICE, HOLD (the
# longest quiet time between the ramp and the first broadcast they run in), PROCS,
# NODE_LOOPS, BENCH_LOOPS, NODE_GOGC, BENCH_TIMEOUT.
#
# A process holds at most ~19,000 sockets here (RLIMIT_NOFILE 20,000), so a
# million connections need 53+ nodes and as many bench workers; every
# (source address, server address) pair has ~28,000 ephemeral ports, so a
# million connections need 36+ source addresses.
#
# Everything it starts it stops by PID when it exits. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

# A node holds at most its fd budget, 19,800 connections here; one over it
# is refused (accepted and closed). The clients of a restarted node
# reconnect evenly to every node on the port, not to its replacement, so
# after RESTART restarts a node that was not restarted holds about
# CONNS/NODES * (1 + RESTART/NODES): at 55 nodes that is 19,835, and half
# of them refused (every other API request was reset). 58 leave ~1,000
# connections of headroom at 18,730.
NODES=${NODES:-58}
CONNS=${CONNS:-1000000}
WORKERS=${WORKERS:-$(((CONNS + 17999) / 18000))}
# Asked of the bench; at a million connections the two cores deliver ~3,000-3,500/s.
CONNECT_RATE=${CONNECT_RATE:-4000}
# One broadcast every 20 s, three in all (at 0, 20 and 40 s): about what the
# machine delivers to a million connections (see DRAIN).
EVENT_RATE=${EVENT_RATE:-0.05}
DURATION=${DURATION:-41s}
# The longest wait for the answer to a trigger: pusher-http-php's default
# (Laravel's broadcaster), 30 s. A node takes over 10 s to answer while it
# writes a broadcast to its ~18,000 clients on a saturated machine; a trigger
# unanswered by then counts as unconfirmed (and its event as expected).
API_TIMEOUT=${API_TIMEOUT:-30s}
# The longest wait for the deliveries after the last broadcast (sent 40 s
# after the first): the machine delivers 32,600-41,000 a second (one P per
# process; 20,000-36,000 with two), so the three broadcasts' 3,000,000
# deliveries take 73-92 s in all (85-150 s). The wait ends as soon as
# everything due has arrived.
DRAIN=${DRAIN:-120s}
# Pusher's own default, what a large deployment chooses: a client that hears
# nothing for 120 s pings. The server pings a client silent for 2.5 times
# that (300 s; Reverb's defaults have the same shape, 30 and 60): the
# clients ping first, so an idle connection costs one round trip per 120 s,
# not two, and a client that hears broadcasts is not pinged at all.
ACTIVITY_TIMEOUT=${ACTIVITY_TIMEOUT:-120}
SOURCE_IPS=${SOURCE_IPS:-127.0.0.2-127.0.0.$((2 + CONNS / 20000))}
PORT=${PORT:-18300}
REDIS_PORT=${REDIS_PORT:-16500}
METRICS_BASE=${METRICS_BASE:-19300}
PRESENCE=${PRESENCE:-100}
RESTART=${RESTART:-5}
# The hold ends when the checks in it are done (the bench's --hold-until:
# the restarted nodes have exited and none of their clients is down), and
# at the latest after HOLD: past it the broadcasts meet the restarts'
# reconnects, and the last one's deliveries may outlast DRAIN. At a million
# connections the presence check takes 18-72 s (the replacements start
# meanwhile), the nodes are drained RESTART_INTERVAL apart, and the last one
# exits 20-36 s after its SIGTERM, its clients back within seconds: the hold
# took 107-205 s. On a slow day that makes the run longer than ten minutes
# rather than wrong.
HOLD=${HOLD:-$(( (PRESENCE > 0 ? 90 : 0) + (RESTART > 0 ? RESTART * 25 + 55 : 0) ))s}
# GOMAXPROCS of each node and bench worker. One: 114 processes share two
# cores, so a process never has more than a fraction of one, and a second P
# only lets more of its threads wait for a core. At a million connections
# with one P the deliveries ran at 32,600-41,000/s and 17.8-20.6 us of
# server CPU each (two: 20,644-20,806/s and 28.3-28.7 us), the bench used
# 431-500 s of CPU instead of 566 s and the 100 presence joins took 8-26 s
# instead of 26-48 s; the ramp was no faster (270-304 s). bench/RESULTS.md
# has the runs.
PROCS=${PROCS:-1}
# Event loops of each node and of each bench worker (0: one per GOMAXPROCS).
# One each: with 111 processes on two cores a second loop adds no
# parallelism, and a loop blocked in epoll_wait holds its P in a syscall, so
# with every P held the Go runtime's sysmon thread retakes them and polls
# every 20 µs (perf: runtime.sysmon 21% of the machine's CPU at 200,000
# connections with two loops each, 13% with one).
NODE_LOOPS=${NODE_LOOPS:-1}
BENCH_LOOPS=${BENCH_LOOPS:-1}
# GOGC of each node: a node holding idle connections allocates little once
# they are open, so a lower GOGC costs little CPU and keeps the heap nearer
# what the connections hold (100 is Go's default; see README, capacity).
NODE_GOGC=${NODE_GOGC:-50}
OUT=${OUT:-/tmp/reverb-scale1m}
KEY=app-key SECRET=app-secret APP_ID=app-id
rm -rf "$OUT" && mkdir -p "$OUT"

# Static (no cgo): a node then maps no libc, ~1.2 MiB less RSS in each of 55
# processes; Go's own DNS resolver and user lookups serve the nodes alike.
CGO_ENABLED=0 go build -o bin/reverb ./cmd/reverb
pids=()
# Nodes started by the restart (in a subshell) are listed in $OUT/nodes.pids.
# Once the figures are taken the nodes are killed, not drained: 55 drains
# of a million connections take minutes of the machine's CPU, and the
# rolling restart is what measures a drain.
cleanup() {
  for p in $(cat "$OUT/nodes.pids" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
log() { echo "[$(date +%T)] $*"; }

log "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), kernel $(uname -r)"
log "nodes $NODES (GOGC $NODE_GOGC), connections $CONNS, bench workers $WORKERS, source addresses $SOURCE_IPS, activity_timeout $ACTIVITY_TIMEOUT s, ping_interval $((ACTIVITY_TIMEOUT * 5 / 2)) s"
for k in fs.file-max net.ipv4.ip_local_port_range net.core.somaxconn net.ipv4.tcp_mem; do
  log "sysctl $k = $(sysctl -n "$k" | tr '\t' ' ')"
done

# Redis runs at a higher priority, standing in for the host of its own a
# deployment gives it: among ~400 runnable threads of 110 busy processes it
# would otherwise get 1/400 of the CPU, and publishes would time out.
nice -n "${REDIS_NICE:--10}" redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no >"$OUT/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

# One configuration per node: they differ only in the metrics port, which is
# how the script reads each node on its own (the WebSocket/API port is shared).
for i in $(seq "$NODES"); do
  cat >"$OUT/node$i.toml" <<TOML
[server]
host = "127.0.0.1"
port = $PORT
reuse_port = true
loops = $NODE_LOOPS
pid_dir = "$OUT"
api_queue = 4096

[[apps]]
app_id = "$APP_ID"
key = "$KEY"
secret = "$SECRET"
activity_timeout = $ACTIVITY_TIMEOUT
ping_interval = $((ACTIVITY_TIMEOUT * 5 / 2))

[scaling]
enabled = true
channel = "scale1m"

[scaling.redis]
port = $REDIS_PORT

[metrics]
enabled = true
port = $((METRICS_BASE + i))
TOML
done

metric() { # metric PORT NAME: the value of an unlabelled metric, empty if none
  { curl -fs -m 5 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; } | awk -v n="$2" '$1 == n {print $2; exit}'
}

declare -A node_pid
t_start=$(now_ms)
t_script=$t_start
# A node runs at nice 0 whoever starts it (the restart runs at -5).
start_node() {
  GOGC=$NODE_GOGC GOMAXPROCS=$PROCS nice -n $((0 - $(ps -o ni= -p $BASHPID))) ./bin/reverb start --config "$OUT/node$1.toml" >>"$OUT/node$1.log" 2>&1 &
  pids+=($!); node_pid[$1]=$!
  echo $! >>"$OUT/nodes.pids"
}
for i in $(seq "$NODES"); do start_node "$i"; done
# In sync: every node answers and counts all the others as peers (asked
# all at once).
synced() {
  local i n
  n=$(for i in $(seq "$NODES"); do metric $((METRICS_BASE + i)) reverb_cluster_peers & done |
    awk -v want=$((NODES - 1)) '$1 >= want {n++} END {print n + 0}')
  [[ "$n" -eq "$NODES" ]]
}
for _ in $(seq 600); do synced && break; sleep 0.1; done
synced || { log "nodes did not come into sync"; exit 1; }
t_sync=$(now_ms)
log "all $NODES nodes up and in sync $((t_sync - t_start)) ms after the first start"

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
server_pids() { local IFS=,; echo "${node_pid[*]}"; }
# The nodes share one binary: RSS counts its ~15 MB of mapped text in every
# process, PSS (the kernel's proportional share) once in all, and RssAnon
# not at all. Prints "rss pss anon" in KiB, summed over the nodes.
mem_kb() {
  local files=() p
  # The current nodes: the restart replaces some (their PIDs are listed in
  # nodes.pids, the subshell's node_pid is not ours).
  for p in $(cat "$OUT/nodes.pids"); do [[ -r /proc/$p/smaps_rollup ]] && files+=("/proc/$p/smaps_rollup"); done
  # cat, not awk, opens them: a node that exits in between is skipped.
  cat "${files[@]}" 2>/dev/null | awk '/^Rss:/ {r += $2} /^Pss:/ {s += $2} /^Pss_Anon:/ {a += $2} END {print r + 0, s + 0, a + 0}'
}
read -r rss_before pss_before anon_before < <(mem_kb)
log "server memory before connections, summed over the nodes: RSS $((rss_before / 1024)) MiB, PSS $((pss_before / 1024)) MiB, anonymous $((anon_before / 1024)) MiB"
redis_cpu() { redis-cli -p "$REDIS_PORT" info cpu | awk -F: '/used_cpu_(sys|user):/ {s+=$2} END {printf "%.2f", s}'; }
redis_cpu0=$(redis_cpu)

# Signed HTTP API GET through the shared port: prints "<body> <HTTP status>
# <seconds> <curl's exit status>" (000 and 7 refused, 28 timed out, 56 reset).
api_get() { # api_get PATH [extra sorted query]
  local path=$1 extra=${2:-} q sig
  q="auth_key=$KEY&auth_timestamp=$(date +%s)&auth_version=1.0${extra:+&$extra}"
  sig=$(printf 'GET\n%s\n%s' "$path" "$q" | openssl dgst -sha256 -hmac "$SECRET" | awk '{print $NF}')
  curl -s -m 10 -w ' %{http_code} %{time_total}' "http://127.0.0.1:$PORT$path?$q&auth_signature=$sig"
  echo " $?"
}

# The cluster-wide reads, asked every 2 s while the load runs, each of
# whichever node the kernel picks: "<ms> <connections> <subscribers of the
# channel> <latency s> <latency s> <status> <curl exit> <status> <curl exit>".
# Checked at the end against the count the bench holds.
api_checks() {
  local c ch
  while :; do
    c=$(api_get "/apps/$APP_ID/connections" || true)
    ch=$(api_get "/apps/$APP_ID/channels" "info=subscription_count" || true)
    # A missing answer (timed out, refused) is logged as -1.
    # An empty channel list (no subscriber yet) counts 0.
    [[ "$ch" == '{"channels":{}} 200 '* ]] && ch='"subscription_count":0 '"${ch#* }"
    echo "$(now_ms) $(grep -o '"connections":[0-9]*' <<<"$c" | cut -d: -f2 | grep . || echo -1) $(grep -o '"subscription_count":[0-9]*' <<<"$ch" | cut -d: -f2 | grep . || echo -1) $(awk '{print $(NF-1)}' <<<"$c") $(awk '{print $(NF-1)}' <<<"$ch") $(awk '{print $(NF-2), $NF}' <<<"$c") $(awk '{print $(NF-2), $NF}' <<<"$ch")"
    sleep 2
  done
}
# The observers (API reads, presence check) run at a higher priority, as
# clients on machines of their own would: the nodes and the bench workers
# keep both cores busy.
api_checks >"$OUT/api.log" 2>&1 &
renice -n -5 $! >/dev/null
pids+=($!); api_pid=$!

# CPU seconds (user+system) of the nodes and of every other reverb process
# (the bench and its workers): "servers bench".
cpu_s() {
  local sf=() bf=() p
  for p in $(cat "$OUT/nodes.pids"); do [[ -r /proc/$p/stat ]] && sf+=("/proc/$p/stat"); done
  for p in $(pgrep -f "reverb bench"); do bf+=("/proc/$p/stat"); done
  echo "$(cat "${sf[@]}" 2>/dev/null | awk '{t += $14 + $15} END {print int(t / 100)}') $(cat "${bf[@]}" /dev/null 2>/dev/null | awk '{t += $14 + $15} END {print int(t / 100)}')"
}

# Every node's RSS (VmRSS, KiB): "min median max".
node_rss() {
  local files=() p
  for p in $(cat "$OUT/nodes.pids"); do [[ -r /proc/$p/status ]] && files+=("/proc/$p/status"); done
  cat "${files[@]}" 2>/dev/null | awk '/^VmRSS:/ {print $2}' | sort -n | awk '{a[NR] = $1} END {print a[1] + 0, a[int((NR + 1) / 2)] + 0, a[NR] + 0}'
}
# Sample every node's RSS and the kernel's socket state every 5 s (more
# often costs the machine CPU the run is short of), at the observers'
# priority: at nice 0 the samples came 15-50 s apart. Fields: time, mem_kb
# (3), TCP sockets in use and buffer pages, load (3), MemAvailable, cpu_s
# (2), node_rss (3).
( while :; do
    echo "$(date +%s) $(mem_kb) $(awk '/^TCP:/ {print $3, $NF}' /proc/net/sockstat) $(cut -d' ' -f1-3 /proc/loadavg) $(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) $(cpu_s) $(node_rss)" >>"$OUT/samples"
    sleep 5
  done ) &
pids+=($!); sampler=$!
renice -n -5 "$sampler" >/dev/null
# The kernel's TCP counters that explain a reset connection, as deltas
# every 10 s (nstat keeps its own history per user; -r starts it afresh).
if command -v nstat >/dev/null; then
  nstat -rn >/dev/null 2>&1 || true
  ( while :; do
      echo "$(date +%s) $(nstat -z TcpEstabResets TcpOutRsts TcpExtTCPAbortOnData TcpExtTCPAbortOnClose TcpExtTCPAbortOnTimeout TcpExtTCPAbortOnMemory TcpExtTCPRcvQDrop TcpExtListenDrops TcpExtTCPMemoryPressures 2>/dev/null | awk 'NR > 1 {printf "%s=%s ", $1, $2}')"
      sleep 10
    done ) >"$OUT/nstat" 2>&1 &
  pids+=($!)
fi
vmstat -n 5 >"$OUT/vmstat" &
pids+=($!); vmstat_pid=$!

# The connections are held once the bench's ramp is over (--ready-file:
# every connection subscribed or failed). Checks started while the ramp's
# last connects ran met nodes too busy to answer a WebSocket upgrade within
# the bench's 10 s.
held() { [[ -s "$OUT/ramped" ]]; }
# The hold's checks are done (the bench's --hold-until): the bench starts
# the broadcasts once none of its connections is down.
# Connections refused at a node's max_connections (its fd budget), summed
# over the nodes up: "<sum> <nodes that answered>".
refused_sum() {
  local mp
  for mp in $(seq $((METRICS_BASE + 1)) $((METRICS_BASE + NODES + RESTART))); do
    metric "$mp" reverb_connections_refused_total &
  done | awk '{s += $1; k++} END {printf "%d %d\n", s, k}'
}
# Once the checks are done every connection is open (the broadcasts open
# none), so that is when the refusals are counted: after the bench the
# nodes are busy with a million closes and answer slowly.
checks_done() {
  touch "$OUT/checks.done"
  log "checks done: the broadcasts start once every dropped client is back"
  refused_sum >"$OUT/refused"
}
# Once the connections are held, the presence check runs, in the bench's
# hold: before the broadcasts.
# The presence check's bound: its members join one after another, and under
# the keepalive load of a million connections a join took 166-339 ms (p50),
# so 100 joins and 20 rounds of API reads took up to 65 s.
PRESENCE_TIMEOUT=${PRESENCE_TIMEOUT:-120s}
presence_check() {
  until held; do sleep 0.5; done
  log "presence: $PRESENCE members on one channel, spread over the nodes, while $(awk '$1 == "connected" {print $2}' "$OUT/ramped") connections are held"
  if nice -n -5 ./bin/reverb bench --config "$OUT/node1.toml" --scenario presence --connections "$PRESENCE" \
    --source-ips 127.0.0.250 --timeout "$PRESENCE_TIMEOUT" --progress off >"$OUT/presence.out" 2>&1; then
    log "presence: $(grep -E '^(presence|converged|failures|HTTP API) ' "$OUT/presence.out" | tr -s ' ' | paste -sd ';')"
  else
    log "presence FAILED:"; grep -v '^{' "$OUT/presence.out"
    touch "$OUT/presence.failed"
  fi
  touch "$OUT/presence.done"
  [[ "$RESTART" -gt 0 ]] || checks_done
}
presence_pid=
if [[ "$PRESENCE" -gt 0 ]]; then presence_check & presence_pid=$!; pids+=($!); fi

# A rolling restart once the connections are held and the presence check is
# done, in the bench's hold: RESTART nodes, one after another, get SIGTERM
# (what `reverb restart` sends a node: it tells its clients to reconnect,
# 4200, and exits) and a replacement takes its place on the same port. Their
# clients reconnect to whichever node the kernel picks (the bench runs with
# --reconnect); every other client must see every event.
#
# With RESTART_OVERLAP=1 (the default) it goes as a deployment with surge
# does: the replacements start beside the nodes on the shared port
# (reuse_port; each has a metrics port of its own) once the connections are
# held, while the presence check runs, and the old nodes are told to drain
# once all of them are ready (/readyz: listening and connected to Redis),
# one every RESTART_INTERVAL seconds: about the time a node takes here to
# leave the port (1-7 s) and send its 4200s (spread over half its
# drain_timeout, 5 s). With 0
# a replacement starts once its predecessor has exited, as a supervisor
# restarts a process, and the next node follows once it is ready. When each
# replacement came into sync (counted every other node as a peer) is logged
# too. The hold's checks are done once every drained node has exited and
# every replacement is in sync.
RESTART_OVERLAP=${RESTART_OVERLAP:-1}
RESTART_INTERVAL=${RESTART_INTERVAL:-10}
# The draining node runs at this nice value from its SIGTERM on, standing in
# for the cores a node has to itself in a deployment, as Redis's does: at
# equal priority among 111 busy processes it gets ~1% of the machine, and
# its drain (~0.8 s of CPU for 18,000 connections) took 50-110 s, its
# clients' 4200s and closes trickling out into the broadcasts. 0 to leave it.
DRAIN_NICE=${DRAIN_NICE:--10}
ready() { curl -fs -o /dev/null -m 2 "http://127.0.0.1:$1/readyz"; }
# in_sync NAME MPORT T0 WHAT: logs when the node on metrics port MPORT
# counts every other node as a peer (in the background; its PID is added
# to waiters).
in_sync() {
  ( for _ in $(seq 240); do
      p=$(metric "$2" reverb_cluster_peers)
      [[ -n "$p" && "$p" -ge $((NODES - 1)) ]] && break
      sleep 0.25
    done
    log "restart: node $1's replacement was in sync $(($(now_ms) - $3)) ms after $4" ) &
  waiters+=($!)
}
restart_nodes() {
  until held; do sleep 0.5; done
  local i old t0 t1 held p name mport waiters=()
  if [[ "$RESTART_OVERLAP" == 1 ]]; then
    t1=$(now_ms)
    for i in $(seq "$RESTART"); do
      name=${i}r mport=$((METRICS_BASE + NODES + i))
      sed "s/^port = $((METRICS_BASE + i))\$/port = $mport/" "$OUT/node$i.toml" >"$OUT/node$name.toml"
      start_node "$name"
      in_sync "$i" "$mport" "$t1" "its start"
    done
    log "restart: $RESTART replacements started beside the nodes they replace"
  fi
  # After the presence check: its members must not land on a draining node.
  while [[ "$PRESENCE" -gt 0 && ! -e "$OUT/presence.done" ]]; do sleep 0.5; done
  if [[ "$RESTART_OVERLAP" == 1 ]]; then
    # All at once (not the node processes: they are children here too).
    local readiness=()
    for i in $(seq "$RESTART"); do
      ( for _ in $(seq 240); do ready $((METRICS_BASE + NODES + i)) && break; sleep 0.25; done ) &
      readiness+=($!)
    done
    wait "${readiness[@]}"
    log "restart: the replacements were ready $(($(now_ms) - t1)) ms after their start"
  fi
  # The drains start RESTART_INTERVAL apart, counted from the first: what
  # comes before a SIGTERM (a metric read, a renice) takes seconds here, and
  # counted from each SIGTERM the drains went 12-16 s apart.
  local tnext
  tnext=$(now_ms)
  for i in $(seq "$RESTART"); do
    old=${node_pid[$i]}
    held=$(metric $((METRICS_BASE + i)) reverb_connections)
    # Every thread: a nice value is per thread on Linux.
    [[ "$DRAIN_NICE" != 0 ]] && renice -n "$DRAIN_NICE" -p $(ls "/proc/$old/task") >/dev/null 2>&1
    t0=$(now_ms)
    kill -TERM "$old"
    if [[ "$RESTART_OVERLAP" == 1 ]]; then
      # Its drain is timed in the background.
      ( while kill -0 "$old" 2>/dev/null; do sleep 0.25; done
        log "restart: node $i (pid $old, ${held:-?} connections) drained and exited $(($(now_ms) - t0)) ms after SIGTERM" ) &
      waiters+=($!)
      tnext=$((tnext + RESTART_INTERVAL * 1000))
      [[ "$i" -lt "$RESTART" ]] && sleep "$(awk -v w=$((tnext - $(now_ms))) 'BEGIN {print (w > 0 ? w / 1000 : 0)}')"
    else
      while kill -0 "$old" 2>/dev/null; do sleep 0.25; done
      t1=$(now_ms)
      log "restart: node $i (pid $old, ${held:-?} connections) drained and exited in $((t1 - t0)) ms"
      start_node "$i"
      for _ in $(seq 240); do ready $((METRICS_BASE + i)) && break; sleep 0.25; done
      log "restart: node $i's replacement (pid ${node_pid[$i]}) was ready $(($(now_ms) - t1)) ms after its start"
      in_sync "$i" $((METRICS_BASE + i)) "$t1" "its start"
    fi
  done
  wait "${waiters[@]}" 2>/dev/null || true
  checks_done
}
# The restart runs at a higher priority, as the observers do: it stands
# for an orchestrator on a machine of its own, and at nice 0 its polls
# (curl, grep, sleep) lagged the events by seconds.
restart_pid=
if [[ "$RESTART" -gt 0 ]]; then
  restart_nodes & restart_pid=$!; pids+=($!)
  renice -n -5 "$restart_pid" >/dev/null
fi

log "ramping $CONNS connections at $CONNECT_RATE/s, holding them $HOLD, then $EVENT_RATE broadcasts/s for $DURATION"
[[ "$RESTART" -gt 0 ]] && RESTART_FLAGS=--reconnect
# Without checks the hold lasts HOLD.
[[ "$PRESENCE" -gt 0 || "$RESTART" -gt 0 ]] && HOLD_FLAGS="--hold-until $OUT/checks.done"
set +e
GOMAXPROCS=$PROCS ./bin/reverb bench --config "$OUT/node1.toml" --scenario fanout --connections "$CONNS" --channels 1 \
  --rate "$EVENT_RATE" --payload 100 --hold "$HOLD" --duration "$DURATION" --drain "$DRAIN" --workers "$WORKERS" --loops "$BENCH_LOOPS" \
  --source-ips "$SOURCE_IPS" --connect-rate "$CONNECT_RATE" --ping-interval "${ACTIVITY_TIMEOUT}s" \
  ${RESTART_FLAGS:-} ${HOLD_FLAGS:-} --ready-file "$OUT/ramped" --timeout "${BENCH_TIMEOUT:-840s}" --api-timeout "$API_TIMEOUT" --server-pid "$(server_pids)" --progress off \
  --report "$OUT/fanout.html" 2>"$OUT/bench.err" | tee "$OUT/bench.out"
status=${PIPESTATUS[0]}
set -e
log "the bench exited with status $status"
# The figures are read at the observers' priority: the kernel and the nodes
# are closing a million connections meanwhile.
renice -n -5 -p $$ >/dev/null

# A check that started is waited for; one still waiting for the ramp's end
# (the bench failed) is stopped by cleanup.
if [[ -n "$presence_pid" ]] && held; then wait "$presence_pid" || true; fi
if [[ -n "$restart_pid" ]] && held; then wait "$restart_pid" || true; fi
kill "$api_pid" "$sampler" "$vmstat_pid" 2>/dev/null || true
echo
log "== results"
read -r peak_rss peak_pss peak_anon < <(awk '$3 > m {m = $3; l = $2 " " $3 " " $4} END {print l}' "$OUT/samples")
log "server memory at the peak, summed over the nodes: PSS $((peak_pss / 1024)) MiB (before: $((pss_before / 1024))), anonymous $((peak_anon / 1024)) MiB, RSS $((peak_rss / 1024)) MiB (counts the shared binary once per node)"
log "growth per connection: PSS $(((peak_pss - pss_before) * 1024 / CONNS)) B, anonymous $(((peak_anon - anon_before) * 1024 / CONNS)) B"
log "server RSS per node at the last sample (KiB): $(tail -n 1 "$OUT/samples" | awk '{print "min", $13, "median", $14, "max", $15}')"
log "kernel: peak TCP sockets in use $(awk '$5 > m {m = $5} END {print m}' "$OUT/samples"), peak TCP buffer memory $(awk '$6 > m {m = $6} END {printf "%d MiB", m * 4 / 1024}' "$OUT/samples"), peak load $(awk '$7 > m {m = $7} END {print m}' "$OUT/samples"), machine memory in use at the peak $(awk 'NR == 1 {f = $10} $10 < l || NR == 1 {l = $10} END {printf "%.1f GiB more than before", (f - l) / 1048576}' "$OUT/samples")"
log "redis: $(redis-cli -p "$REDIS_PORT" info memory | awk -F: '/^used_memory_human:|^used_memory_peak_human:/ {gsub("\r",""); printf "%s=%s ", $1, $2}') CPU $(echo "$(redis_cpu) - $redis_cpu0" | bc) s during the run, $(redis-cli -p "$REDIS_PORT" info clients | awk -F: '/^connected_clients:/ {gsub("\r",""); print $2}') clients"
# Every answer must be complete (no timeout) and agree between the two
# endpoints (each connection is subscribed to the one channel); reported
# with the largest count seen and the slowest answer.
awk '{n++; if ($2 < 0 || $3 < 0) {miss++; if ($2 < 0) why[$6 "/" $7]++; if ($3 < 0) why[$8 "/" $9]++} else if ($2 == $3) same++; else diff++
    if ($2 > m) m = $2; if ($4 > l) l = $4; if ($5 > l) l = $5}
  END {for (w in why) ws = ws sprintf(" %s x%d", w, why[w])
    printf "API reads during the run: %d rounds, %d answered by both endpoints with the same count, %d differing (connections changing in between), %d not answered (HTTP status/curl exit:%s); largest count %d, slowest answer %.3f s\n", n, same, diff, miss, ws ? ws : " none", m, l}' "$OUT/api.log" | while read -r l; do log "$l"; done
# A node over its fd budget (max_connections) refuses connections; the
# restarted nodes' counts went with them. Read when the checks were done
# (checks_done), else now.
if [[ -s "$OUT/refused" ]]; then when="when the checks were done"; else refused_sum >"$OUT/refused"; when="at the end"; fi
read -r refused answered <"$OUT/refused"
log "connections refused at a node's max_connections (its fd budget), summed over the $answered nodes up that answered ($when): $refused"
log "the run took $((($(now_ms) - t_script) / 1000)) s from the first node's start"
if [[ -e "$OUT/presence.failed" ]]; then
  log "the presence check failed"
  [[ "$status" == 0 ]] && status=1
fi
exit "$status"
