# Shared by bench/compare-tls.sh and bench/compare-connect.sh (sourced, not run).
#
# Expects ROOT, OUT, SOKETI_DIR, OUR_PORT and SOKETI_PORT to be set. Provides:
#   build_and_install        builds $OUT/reverb and copies + `npm ci`s Soketi into $SOKETI_DIR if missing
#   start_ours [CONFIG]      starts our server (with --config CONFIG when given), sets OUR_PID
#   start_soketi             starts Soketi (SOKETI_* variables in the environment pass through), sets SOKETI_PID
#   stop_ours, stop_soketi   stop them by PID (also done on exit)
#   run NAME SERVER PORT PID ARGS...   one `reverb bench` run, its JSON line in $OUT/NAME.SERVER.json
#   j FILE JQ                a field of the JSON line of FILE
#   ratio A B                A/B with two decimals, or -
# Everything listens on 127.0.0.1 only.

BIN="$OUT/reverb"
OUR_PID=""
SOKETI_PID=""

build_and_install() {
  mkdir -p "$OUT"
  echo "building $BIN" >&2
  (cd "$ROOT" && go build -o "$BIN" ./cmd/reverb)
  if [ ! -f "$SOKETI_DIR/node_modules/@soketi/soketi/bin/server.js" ]; then
    echo "installing soketi into $SOKETI_DIR" >&2
    rm -rf "$SOKETI_DIR"
    cp -r "$ROOT/../shared/peers/soketi" "$SOKETI_DIR"
    chmod -R u+w "$SOKETI_DIR"
    (cd "$SOKETI_DIR" && npm ci --no-audit --no-fund >"$OUT/npm.log" 2>&1)
  fi
}

stop_pid() { # PID: SIGTERM, wait up to 30 s (Soketi closes 15k sockets slowly), then SIGKILL
  local p="$1"
  [ -n "$p" ] || return 0
  kill -0 "$p" 2>/dev/null || return 0
  kill -TERM "$p" 2>/dev/null || true
  for _ in $(seq 1 120); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.25; done
  kill -KILL "$p" 2>/dev/null || true
}

stop_ours() { stop_pid "$OUR_PID"; OUR_PID=""; }
stop_soketi() { stop_pid "$SOKETI_PID"; SOKETI_PID=""; rm -f "$SOKETI_DIR/pid.$SOKETI_PORT"; }

cleanup() {
  stop_ours
  stop_soketi
}
trap cleanup EXIT INT TERM

wait_port() {
  for _ in $(seq 1 150); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 did not open" >&2
  return 1
}

wait_port_free() {
  for _ in $(seq 1 100); do
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "port $1 is still in use" >&2
  return 1
}

start_ours() {
  wait_port_free "$OUR_PORT"
  if [ -n "${1:-}" ]; then
    "$BIN" start --config "$1" >>"$OUT/ours.log" 2>&1 &
  else
    REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret REVERB_APP_MAX_MESSAGE_SIZE=100000 \
      "$BIN" start --host 127.0.0.1 --port "$OUR_PORT" >>"$OUT/ours.log" 2>&1 &
  fi
  OUR_PID=$!
  wait_port "$OUR_PORT"
}

start_soketi() {
  wait_port_free "$SOKETI_PORT"
  "$SOKETI_DIR/start.sh" "$SOKETI_PORT" >>"$OUT/soketi.log" 2>&1 &
  SOKETI_PID=$! # start.sh exec's into node: this is the server's PID
  wait_port "$SOKETI_PORT"
}

run() {
  local name="$1" server="$2" port="$3" pid="$4"
  shift 4
  local cmd=("$BIN" bench --port "$port" --server-pid "$pid" --app-id app-id --key app-key --secret app-secret
    --json --progress off --report "$OUT/$name.$server.html" "$@")
  echo "+ ${cmd[*]}" | sed "s|$BIN|reverb|" | tee -a "$OUT/commands.txt" >&2
  "${cmd[@]}" >"$OUT/$name.$server.json" 2>>"$OUT/bench.stderr" || echo "  (exit $?; see $OUT/$name.$server.json)" >&2
  tail -1 "$OUT/$name.$server.json" | jq -c '{scenario, tls, connected, failed, ops_per_s, latency: .latency.p99_us, loss, server_proc, errors}' >&2 || true
}

j() { tail -1 "$OUT/$1.json" 2>/dev/null | jq -r "$2 // empty" 2>/dev/null || true; }

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b != "" && b+0 != 0) printf "%.2f", a/b; else print "-" }'; }

# median of the numbers given (one per argument; empty ones skipped)
median() {
  printf '%s\n' "$@" | { grep -v '^$' || true; } | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%g\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
