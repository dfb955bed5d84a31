#!/usr/bin/env bash
# Paced plain connects and trigger fairness, our server vs Soketi, on this machine (loopback only).
#
#   bench/compare-connect.sh            # from anywhere
#
# 1. Paced connect, RUNS times, alternating which server goes first, each on a fresh process:
#    CONNS ws:// connections at RATE/s over CHANNELS public channels; server CPU per connect+subscribe
#    ((utime+stime after the ramp - before) / connections, from /proc/PID) and RSS per idle connection.
# 2. Fairness, FAIR_RUNS times, alternating, fresh processes: FAIR_CONNS subscribers of one channel,
#    HTTP triggers at FAIR_RATE/s for FAIR_SECONDS s. Reports the trigger answer latency (client side,
#    from sending the HTTP request to reading the answer) and the delivery latency (trigger sent to
#    event received), p50 and p99: a server that answers the API only once it has written every
#    delivery shows it in the first, one that starves deliveries behind the API in the second.
# Each table gives the median over the runs, ours | Soketi | ratio; every run's JSON line is kept.
#
# Environment knobs:
#   OUT=/tmp/bench-compare-connect   JSON lines, HTML reports, commands and logs
#   SOKETI_DIR=/tmp/soketi           a copy of ../shared/peers/soketi (created and `npm ci`-ed if missing)
#   CONNS=15000 RATE=2000 CHANNELS=100 HOLD=2 RUNS=3
#   FAIR_CONNS=15000 FAIR_RATE=4 FAIR_SECONDS=20 PAYLOAD=100 FAIR_RUNS=1
#   SKIP_CONNECT=1 / SKIP_FAIR=1     leave out a part
#   OUR_PORT=18080 SOKETI_PORT=6001
# Needs go, node/npm and jq.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/bench-compare-connect}"
SOKETI_DIR="${SOKETI_DIR:-/tmp/soketi}"
OUR_PORT="${OUR_PORT:-18080}"
SOKETI_PORT="${SOKETI_PORT:-6001}"
CONNS="${CONNS:-15000}"
RATE="${RATE:-2000}"
CHANNELS="${CHANNELS:-100}"
HOLD="${HOLD:-2}"
RUNS="${RUNS:-3}"
FAIR_CONNS="${FAIR_CONNS:-15000}"
FAIR_RATE="${FAIR_RATE:-4}"
FAIR_SECONDS="${FAIR_SECONDS:-20}"
PAYLOAD="${PAYLOAD:-100}"
FAIR_RUNS="${FAIR_RUNS:-1}"

# shellcheck source=bench/compare-lib.sh
. "$ROOT/bench/compare-lib.sh"
build_and_install
: >"$OUT/commands.txt"

# each NAME RUNS ARGS...: NAME-i.SERVER for i in 1..RUNS, alternating the order, fresh servers
each() {
  local name="$1" runs="$2" i s
  shift 2
  for i in $(seq 1 "$runs"); do
    local order="ours soketi"
    [ $((i % 2)) -eq 0 ] && order="soketi ours"
    for s in $order; do
      if [ "$s" = ours ]; then
        start_ours
        run "$name-$i" ours "$OUR_PORT" "$OUR_PID" "$@"
        stop_ours
      else
        start_soketi
        run "$name-$i" soketi "$SOKETI_PORT" "$SOKETI_PID" "$@"
        stop_soketi
      fi
    done
  done
}

# row LABEL NAME RUNS JQ: medians over the runs
row() {
  local label="$1" name="$2" runs="$3" q="$4" a b i
  local va=() vb=() all_a="" all_b=""
  for i in $(seq 1 "$runs"); do
    va+=("$(j "$name-$i.ours" "$q")")
    vb+=("$(j "$name-$i.soketi" "$q")")
  done
  a="$(median "${va[@]}")"
  b="$(median "${vb[@]}")"
  if [ "$runs" -gt 1 ]; then
    all_a=" (${va[*]})"
    all_b=" (${vb[*]})"
  fi
  printf '| %s | %s%s | %s%s | %s |\n' "$label" "${a:--}" "$all_a" "${b:--}" "$all_b" "$(ratio "$a" "$b")"
}

if [ -z "${SKIP_CONNECT:-}" ]; then
  each connect "$RUNS" --scenario connect --connections "$CONNS" --rate "$RATE" --channels "$CHANNELS" \
    --duration "${HOLD}s" --timeout "$(( CONNS / RATE + HOLD + 120 ))s"
fi
if [ -z "${SKIP_FAIR:-}" ]; then
  each fair "$FAIR_RUNS" --scenario fanout --connections "$FAIR_CONNS" --rate "$FAIR_RATE" --payload "$PAYLOAD" \
    --duration "${FAIR_SECONDS}s" --timeout "$(( FAIR_SECONDS + 240 ))s"
fi

{
  if [ -z "${SKIP_CONNECT:-}" ]; then
    echo "Paced connect: $CONNS ws:// connections at $RATE/s over $CHANNELS channels; median of $RUNS runs (each run in parentheses)"
    echo
    echo "| metric | ours | soketi | ours/soketi |"
    echo "|---|---|---|---|"
    row "connected" connect "$RUNS" '.connected'
    row "CPU per connect+subscribe (µs)" connect "$RUNS" '.server_proc.cpu_per_op_us'
    row "RSS per idle subscribed connection (bytes)" connect "$RUNS" '.server_proc.rss_per_conn_bytes'
    row "connects/s" connect "$RUNS" '.connects_per_s'
    row "connect+subscribe p99 (µs)" connect "$RUNS" '.connect_latency.p99_us'
    echo
  fi
  if [ -z "${SKIP_FAIR:-}" ]; then
    echo "Fairness: $FAIR_CONNS subscribers of one channel, HTTP triggers at $FAIR_RATE/s for $FAIR_SECONDS s; median of $FAIR_RUNS run(s)"
    echo
    echo "| metric | ours | soketi | ours/soketi |"
    echo "|---|---|---|---|"
    row "triggers answered" fair "$FAIR_RUNS" '.triggers'
    row "trigger answer latency p50 (µs)" fair "$FAIR_RUNS" '.trigger_latency.p50_us'
    row "trigger answer latency p99 (µs)" fair "$FAIR_RUNS" '.trigger_latency.p99_us'
    row "delivery latency p50 (µs)" fair "$FAIR_RUNS" '.latency.p50_us'
    row "delivery latency p99 (µs)" fair "$FAIR_RUNS" '.latency.p99_us'
    row "deliveries lost" fair "$FAIR_RUNS" '.loss'
    row "CPU per delivery (µs)" fair "$FAIR_RUNS" '.server_proc.cpu_per_op_us'
  fi
} | tee "$OUT/table.md"
echo "JSON lines, HTML reports, commands and logs in $OUT" >&2
