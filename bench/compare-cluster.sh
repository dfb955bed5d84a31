#!/usr/bin/env bash
# Two-node cross-node benchmark of our server and Soketi, side by side (loopback only).
#
#   bench/compare-cluster.sh            # from the repository root (or anywhere); `make bench-cluster`
#
# For each server: a fresh redis-server on a free port, two nodes (A and B) sharing it, SUBSCRIBERS
# subscribers of one public channel on node B, EVENTS events triggered through the signed HTTP API of
# node A by API_CLIENTS keep-alive clients, PAYLOAD bytes each. Three runs per server:
#   paced    RATE triggers/s: delivery latency on node B, server CPU per event summed over both nodes;
#   unpaced  as fast as the clients go: accepted triggers/s, 503 refusals (counted, not retried), and
#            events lost (answered 200 but missed by some subscriber after the drain);
#   low      LOW_RATE triggers/s for LOW_EVENTS events, a load both servers sustain here: delivery
#            latency that is not a backlog.
# Each node's CPU (utime+stime over the whole bench run, connect and drain included) and the bench
# client's CPU are also given per accepted event: client and servers share the machine's cores.
#
# What shapes Soketi's figures (1.6.1, checked with curl -v, perf and syscall counts):
# - it answers every HTTP API request with `Connection: close` (its handler ends each response with
#   closeConnection set), whatever the client asks, so every trigger is a new TCP connection: node A
#   and the client pay a connect and a close per event;
# - node B writes each delivery with its own send(2), one per subscriber per event (no coalescing),
#   ~10 µs each on this VM with JSON parse/serialize per subscriber, so ~1 ms of node B's one thread
#   per event at 100 subscribers: about 1,000 events/s at most. At RATE=3800 it falls behind and its
#   paced latency is the length of the backlog (it grows with EVENTS), and the bench client, which
#   reads those frames one segment at a time, takes a larger share of the cores than against ours.
# With 1 subscriber on node B instead, Soketi takes ~200 µs per event (both nodes) and ~4,800 triggers/s.
#
# Environment knobs:
#   OUT=/tmp/bench-cluster          where the JSON lines, HTML reports, logs and table.md go
#   SOKETI_DIR=/tmp/soketi-cluster  a copy of ../shared/peers/soketi (created and `npm ci`-ed if missing)
#   SUBSCRIBERS=100 API_CLIENTS=16 EVENTS=30000 RATE=3800 PAYLOAD=100
#   LOW_RATE=300 LOW_EVENTS=3000    the low run (LOW_RATE=0: skipped)
#   DRAIN=10s                       longest wait for in-flight deliveries after the last trigger
#   TIMEOUT=5m                      bound on every bench run (--timeout)
#   OUR_PORTS="18310 18311"         our nodes A and B (empty: free ports picked from 18310 up)
#   SOKETI_PORTS="6011 6012"        Soketi nodes A and B (empty: free ports picked from 6011 up)
#   REDIS_PORT=                     empty: a free port picked from 16410 up for each fresh Redis
#
# Our nodes also serve metrics; their Redis counters after each run go to $OUT/metrics.MODE.ours.NODE.txt.
# Everything it starts (redis-server, the nodes) it remembers by PID and stops by PID, also on exit.
# Every bench run is bounded by --timeout. Needs go, node/npm, redis-server, jq and curl.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/bench-cluster}"
SOKETI_DIR="${SOKETI_DIR:-/tmp/soketi-cluster}"
SUBSCRIBERS="${SUBSCRIBERS:-100}"
API_CLIENTS="${API_CLIENTS:-16}"
EVENTS="${EVENTS:-30000}"
RATE="${RATE:-3800}"
PAYLOAD="${PAYLOAD:-100}"
LOW_RATE="${LOW_RATE:-300}"
LOW_EVENTS="${LOW_EVENTS:-3000}"
DRAIN="${DRAIN:-10s}"
TIMEOUT="${TIMEOUT:-5m}"
OUR_PORTS="${OUR_PORTS:-}"
SOKETI_PORTS="${SOKETI_PORTS:-}"
REDIS_PORT="${REDIS_PORT:-}"

for cmd in go node npm redis-server redis-cli jq curl; do
  command -v "$cmd" >/dev/null || { echo "compare-cluster.sh: $cmd is needed" >&2; exit 1; }
done

mkdir -p "$OUT"
BIN="$OUT/reverb"
echo "building $BIN" >&2
(cd "$ROOT" && go build -o "$BIN" ./cmd/reverb)

if [ ! -f "$SOKETI_DIR/node_modules/@soketi/soketi/bin/server.js" ]; then
  echo "installing soketi into $SOKETI_DIR" >&2
  rm -rf "$SOKETI_DIR"
  cp -r "$ROOT/../shared/peers/soketi" "$SOKETI_DIR"
  chmod -R u+w "$SOKETI_DIR"
  (cd "$SOKETI_DIR" && npm ci --no-audit --no-fund >"$OUT/npm.log" 2>&1)
fi

# PIDs of everything started and not yet stopped.
STARTED=()

# stop_pid PID: SIGTERM, up to 10 s, then SIGKILL.
stop_pid() {
  local p="$1"
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
  kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null || true
  wait "$p" 2>/dev/null || true
}

# stop_all: stops what was started, last first.
stop_all() {
  local i
  for ((i = ${#STARTED[@]} - 1; i >= 0; i--)); do stop_pid "${STARTED[$i]}"; done
  STARTED=()
}
trap stop_all EXIT
trap 'exit 130' INT TERM

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# free_port BASE: sets FREE to the first port from BASE up that nobody listens on and that this
# script did not hand out already.
TAKEN=" "
free_port() {
  local p="$1"
  while port_open "$p" || [[ "$TAKEN" == *" $p "* ]]; do p=$((p + 1)); done
  TAKEN="$TAKEN$p "
  FREE="$p"
}

wait_port() {
  for _ in $(seq 1 150); do
    if port_open "$1"; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

# start_redis: a fresh redis-server; sets RP (its port).
start_redis() {
  RP="$REDIS_PORT"
  if [ -z "$RP" ]; then free_port 16410; RP="$FREE"; fi
  redis-server --port "$RP" --bind 127.0.0.1 --save "" --appendonly no --protected-mode no \
    >"$OUT/redis.$1.log" 2>&1 &
  STARTED+=($!)
  for _ in $(seq 1 100); do redis-cli -p "$RP" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$RP" flushall >/dev/null
}

# start_ours PORT NAME: one node of ours, scaling over the Redis on $RP, metrics on a free port
# (saved after each run: reverb_redis_dropped_total tells where lost events went); sets NODE_PID.
start_ours() {
  local mport
  free_port 9710; mport="$FREE"
  printf -v "METRICS_$2" '%s' "$mport"
  cat >"$OUT/ours.$2.toml" <<TOML
[server]
host = "127.0.0.1"
port = $1
pid_dir = "$OUT"
max_request_size = 100000

[[apps]]
app_id = "app-id"
key = "app-key"
secret = "app-secret"
max_message_size = 100000

[scaling]
enabled = true

[scaling.redis]
host = "127.0.0.1"
port = $RP

[metrics]
enabled = true
host = "127.0.0.1"
port = $mport
TOML
  # The environment wins over the file; the Redis settings also go through it, Laravel's way.
  REVERB_SCALING_ENABLED=true REDIS_HOST=127.0.0.1 REDIS_PORT="$RP" \
    "$BIN" start --config "$OUT/ours.$2.toml" >"$OUT/ours.$2.log" 2>&1 &
  NODE_PID=$!
  STARTED+=("$NODE_PID")
  wait_port "$1"
}

# ours_metrics MODE: saves both nodes' Redis and API queue counters after a run of ours.
ours_metrics() {
  local n v
  for n in A B; do
    v="METRICS_$n"
    curl -fs "http://127.0.0.1:${!v}/metrics" 2>/dev/null | grep -E '^reverb_(redis|http_api_queue|slow_consumer)' \
      >"$OUT/metrics.$1.ours.$n.txt" || true
    echo "  node $n after $1: $(grep -E '^reverb_(redis_(publishes|receives|dropped|refused)|slow_consumer_disconnects)_total' "$OUT/metrics.$1.ours.$n.txt" | tr '\n' ' ')" >&2
  done
}

# start_soketi PORT NAME: one Soketi node with the Redis adapter on $RP; sets NODE_PID (start.sh
# exec's into node, so $! is the server itself).
start_soketi() {
  local usage cport
  free_port 9611; usage="$FREE"
  free_port 11012; cport="$FREE"
  SOKETI_ADAPTER_DRIVER=redis SOKETI_DB_REDIS_HOST=127.0.0.1 SOKETI_DB_REDIS_PORT="$RP" \
  SOKETI_DEFAULT_APP_ID=app-id SOKETI_DEFAULT_APP_KEY=app-key SOKETI_DEFAULT_APP_SECRET=app-secret \
  SOKETI_CLUSTER_PORT="$cport" SOKETI_SHUTDOWN_GRACE_PERIOD=500 \
    "$SOKETI_DIR/start.sh" "$1" "$usage" >"$OUT/soketi.$2.log" 2>&1 &
  NODE_PID=$!
  STARTED+=("$NODE_PID")
  wait_port "$1"
}

: >"$OUT/commands.txt"
# cpu_ticks PID: utime+stime of PID in clock ticks (fields counted after the command name's ')').
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk '{ s = $12 + $13 } END { print s + 0 }'; }
HZ="$(getconf CLK_TCK)"

# run SERVER MODE PORT_A PORT_B PID_A PID_B RATE EVENTS: one bench run; its JSON line goes to
# $OUT/MODE.SERVER.json, each node's CPU per accepted event over the whole run to $OUT/MODE.SERVER.nodes.json.
run() {
  local server="$1" mode="$2" a="$3" b="$4" pa="$5" pb="$6" rate="$7" events="$8" ta tb
  local cmd=("$BIN" bench --scenario cross --port "$b" --api-port "$a" --connections "$SUBSCRIBERS"
    --api-clients "$API_CLIENTS" --events "$events" --rate "$rate" --payload "$PAYLOAD" --drain "$DRAIN"
    --server-pid "$pa,$pb" --timeout "$TIMEOUT" --progress off --json --report "$OUT/$mode.$server.html")
  echo "+ ${cmd[*]}" | sed "s|$BIN|reverb|" | tee -a "$OUT/commands.txt" >&2
  ta="$(cpu_ticks "$pa")"; tb="$(cpu_ticks "$pb")"
  "${cmd[@]}" >"$OUT/$mode.$server.json" 2>>"$OUT/bench.stderr" || echo "  (exit $?; see $OUT/$mode.$server.json)" >&2
  jq -cn --argjson a "$(( $(cpu_ticks "$pa") - ta ))" --argjson b "$(( $(cpu_ticks "$pb") - tb ))" --argjson hz "$HZ" \
    --argjson n "$(tail -1 "$OUT/$mode.$server.json" | jq '.cross.accepted // 0' 2>/dev/null || echo 0)" \
    'if $n > 0 then {a_us_per_event: ($a * 1e6 / $hz / $n | round), b_us_per_event: ($b * 1e6 / $hz / $n | round)} else {} end' \
    >"$OUT/$mode.$server.nodes.json"
  tail -1 "$OUT/$mode.$server.json" | jq -c '{server: "'"$server"'", cross, latency: {p50_us: .latency.p50_us, p99_us: .latency.p99_us, max_us: .latency.max_us}, client_cpu_s, errors}' >&2 || true
  echo "  CPU per event, whole run: $(cat "$OUT/$mode.$server.nodes.json")" >&2
}

# bench_server SERVER: fresh Redis, two nodes, paced, unpaced and low runs, everything stopped.
bench_server() {
  local server="$1" ports base a b pa pb
  start_redis "$server"
  if [ "$server" = ours ]; then ports="$OUR_PORTS"; base=18310; else ports="$SOKETI_PORTS"; base=6011; fi
  if [ -n "$ports" ]; then
    read -r a b <<<"$ports"
  else
    free_port "$base"; a="$FREE"
    free_port "$base"; b="$FREE"
  fi
  "start_$server" "$a" A
  pa=$NODE_PID
  "start_$server" "$b" B
  pb=$NODE_PID
  echo "$server: node A PID $pa on $a, node B PID $pb on $b, Redis on $RP" >&2
  run "$server" paced "$a" "$b" "$pa" "$pb" "$RATE" "$EVENTS"
  if [ "$server" = ours ]; then ours_metrics paced; fi
  run "$server" unpaced "$a" "$b" "$pa" "$pb" 0 "$EVENTS"
  if [ "$server" = ours ]; then ours_metrics unpaced; fi
  # Last, on warm servers (Node's JIT has compiled Soketi's delivery path by then).
  if [ "$LOW_RATE" != 0 ]; then
    run "$server" low "$a" "$b" "$pa" "$pb" "$LOW_RATE" "$LOW_EVENTS"
    if [ "$server" = ours ]; then ours_metrics low; fi
  fi
  stop_all
  TAKEN=" "
}

bench_server ours
bench_server soketi

# Side-by-side table.
j() { tail -1 "$OUT/$1.$2.json" 2>/dev/null | jq -r "$3 // empty" 2>/dev/null || true; }
row() { # label mode jq-expression [file suffix, default json]
  local a b r f="${4:-json}"
  a="$(tail -1 "$OUT/$2.ours.$f" 2>/dev/null | jq -r "$3 // empty" 2>/dev/null || true)"
  b="$(tail -1 "$OUT/$2.soketi.$f" 2>/dev/null | jq -r "$3 // empty" 2>/dev/null || true)"
  r="$(awk -v a="$a" -v b="$b" 'BEGIN { if (a != "" && b != "" && b+0 != 0) printf "%.2f", a/b; else print "-" }')"
  printf '| %s | %s | %s | %s |\n' "$1" "${a:--}" "${b:--}" "$r"
}
{
  echo "Two nodes over Redis: $SUBSCRIBERS subscribers on node B, $EVENTS events of $PAYLOAD bytes triggered on node A by $API_CLIENTS HTTP clients."
  echo
  echo "| metric | ours | Soketi | ours/Soketi |"
  echo "|---|---|---|---|"
  row "paced ($RATE/s) delivery latency p99 (ms)" paced '(.latency.p99_us / 100 | round) / 10'
  row "paced CPU per event (µs, both nodes)" paced '.cross.cpu_us_per_event'
  row "unpaced accepted triggers/s" unpaced '.cross.accepted_per_s'
  row "unpaced 503s" unpaced '.cross.refused_503'
  row "unpaced lost events" unpaced '.cross.lost_events'
  row "paced delivery latency p50 (ms)" paced '(.latency.p50_us / 100 | round) / 10'
  row "paced delivery latency max (ms)" paced '(.latency.max_us / 100 | round) / 10'
  row "paced accepted triggers/s" paced '.cross.accepted_per_s'
  row "paced lost events" paced '.cross.lost_events'
  row "unpaced missing deliveries" unpaced '.cross.missing_deliveries'
  row "unpaced other errors" unpaced '.cross.other_errors'
  row "unpaced delivery latency p99 (ms)" unpaced '(.latency.p99_us / 100 | round) / 10'
  row "paced CPU per event, node A (µs, whole run)" paced '.a_us_per_event' nodes.json
  row "paced CPU per event, node B (µs, whole run)" paced '.b_us_per_event' nodes.json
  row "paced bench client CPU per event (µs)" paced '.client_cpu_s * 1e6 / .cross.accepted | round'
  if [ "$LOW_RATE" != 0 ]; then
    row "low ($LOW_RATE/s, $LOW_EVENTS events) delivery latency p50 (ms)" low '(.latency.p50_us / 100 | round) / 10'
    row "low ($LOW_RATE/s) delivery latency p99 (ms)" low '(.latency.p99_us / 100 | round) / 10'
    row "low ($LOW_RATE/s) CPU per event (µs, both nodes)" low '.cross.cpu_us_per_event'
    row "low ($LOW_RATE/s) lost events" low '.cross.lost_events'
  fi
  for m in low paced; do
    want="$RATE"; [ "$m" = low ] && want="$LOW_RATE"
    [ "$want" = 0 ] && continue
    for s in ours soketi; do
      got="$(j "$m" "$s" '.cross.accepted_per_s')"
      if [ -n "$got" ] && awk -v g="$got" -v w="$want" 'BEGIN { exit !(g < 0.95 * w) }'; then
        echo
        echo "Note: $s did not keep the pace of the $m run: $got of $want triggers/s accepted; its $m latency includes the backlog."
      fi
    done
  done
} | tee "$OUT/table.md"
cat "$OUT"/{low,paced,unpaced}.ours.json "$OUT"/{low,paced,unpaced}.soketi.json 2>/dev/null |
  grep '^{' >"$OUT/results.jsonl" || true
echo "JSON lines ($OUT/results.jsonl), HTML reports and commands in $OUT" >&2
