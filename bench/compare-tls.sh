#!/usr/bin/env bash
# Side-by-side cost of TLS connections, our server vs Soketi, on this machine (loopback only).
#
#   bench/compare-tls.sh            # from anywhere
#
# Ours runs twice: with the default key exchanges and with key_exchanges = ["X25519"], the one Soketi
# negotiates with these clients. Both servers get the same self-signed ECDSA P-256 certificate (generated with openssl into $OUT) and
# run on a fresh process each. The bench dials wss:// with a full TLS handshake per connection (no
# session resumption, like distinct browsers; --tls-insecure since the certificate is self-signed),
# paced, over public channels, then holds the connections idle. Measured from /proc/PID of the server
# (`reverb bench --server-pid`):
#   - RSS per idle subscribed TLS connection: (VmRSS once idle after the ramp - VmRSS before) / connections
#   - CPU per TLS connect+subscribe: (utime+stime after the ramp - before) / connections
#
# Environment knobs:
#   OUT=/tmp/bench-compare-tls  certificate, configuration, JSON lines, HTML reports, logs
#   SOKETI_DIR=/tmp/soketi      a copy of ../shared/peers/soketi (created and `npm ci`-ed if missing)
#   CONNS=5000 RATE=500 CHANNELS=100 HOLD=5   connections, connects/s, channels, seconds held idle
#   RUNS=1                      repetitions, alternating servers (fresh processes each time)
#   OUR_PORT=18443 SOKETI_PORT=6443
# Needs go, node/npm, openssl and jq.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-/tmp/bench-compare-tls}"
SOKETI_DIR="${SOKETI_DIR:-/tmp/soketi}"
OUR_PORT="${OUR_PORT:-18443}"
SOKETI_PORT="${SOKETI_PORT:-6443}"
CONNS="${CONNS:-5000}"
RATE="${RATE:-500}"
CHANNELS="${CHANNELS:-100}"
HOLD="${HOLD:-5}"
RUNS="${RUNS:-1}"

# shellcheck source=bench/compare-lib.sh
. "$ROOT/bench/compare-lib.sh"
build_and_install
: >"$OUT/commands.txt"

CERT="$OUT/cert.pem"
KEY="$OUT/key.pem"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
  -keyout "$KEY" -out "$CERT" 2>"$OUT/openssl.log"
chmod 600 "$KEY"

CONF="$OUT/reverb-tls.toml"
cat >"$CONF" <<EOF
[server]
host = "127.0.0.1"
port = $OUR_PORT

[server.tls]
cert = "$CERT"
key = "$KEY"

[[apps]]
app_id = "app-id"
key = "app-key"
secret = "app-secret"
max_message_size = 100000
EOF
# The same with the key exchange Soketi negotiates with these clients
# (X25519; ours offers the post-quantum hybrid X25519MLKEM768 by default).
CONFX="$OUT/reverb-tls-x25519.toml"
sed 's/^key = "\(.*\.pem\)"$/key = "\1"\nkey_exchanges = ["X25519"]/' "$CONF" >"$CONFX"

timeout_s=$(( CONNS / RATE + HOLD + 120 ))
for i in $(seq 1 "$RUNS"); do
  order="ours oursx soketi"
  [ $((i % 2)) -eq 0 ] && order="soketi oursx ours"
  for s in $order; do
    if [ "$s" = ours ] || [ "$s" = oursx ]; then
      conf="$CONF"
      [ "$s" = oursx ] && conf="$CONFX"
      start_ours "$conf"
      run "connect-tls-$i" "$s" "$OUR_PORT" "$OUR_PID" --scenario connect --tls --tls-insecure \
        --connections "$CONNS" --rate "$RATE" --channels "$CHANNELS" --duration "${HOLD}s" --timeout "${timeout_s}s"
      stop_ours
    else
      SOKETI_SSL_CERT="$CERT" SOKETI_SSL_KEY="$KEY" start_soketi
      run "connect-tls-$i" soketi "$SOKETI_PORT" "$SOKETI_PID" --scenario connect --tls --tls-insecure \
        --connections "$CONNS" --rate "$RATE" --channels "$CHANNELS" --duration "${HOLD}s" --timeout "${timeout_s}s"
      stop_soketi
    fi
  done
done

# med SERVER JQ: the median over the runs
med() {
  local vals=() i
  for i in $(seq 1 "$RUNS"); do vals+=("$(j "connect-tls-$i.$1" "$2")"); done
  median "${vals[@]}"
}
row() { # label jq
  local a x b
  a="$(med ours "$2")"
  x="$(med oursx "$2")"
  b="$(med soketi "$2")"
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "${a:--}" "${x:--}" "${b:--}" "$(ratio "$a" "$b")" "$(ratio "$x" "$b")"
}
{
  echo "TLS connect: $CONNS wss:// connections at $RATE/s over $CHANNELS channels, full handshakes, median of $RUNS run(s)"
  echo
  echo "ours: default key exchanges (X25519MLKEM768 hybrid negotiated); ours X25519: key_exchanges = [\"X25519\"],"
  echo "what Soketi negotiates with the same clients"
  echo
  echo "| metric | ours | ours X25519 | soketi | ours/soketi | ours X25519/soketi |"
  echo "|---|---|---|---|---|---|"
  row "connected" '.connected'
  row "RSS per subscribed TLS connection, 1 s after the ramp (bytes)" '.server_proc.rss_per_conn_bytes'
  row "RSS per idle subscribed TLS connection, after the ${HOLD} s hold (bytes)" '.server_proc.rss_held_per_conn_bytes'
  row "CPU per TLS connect+subscribe (µs)" '.server_proc.cpu_per_op_us'
  row "server CPU over the ramp (s)" '.server_proc.cpu_s'
  row "connects/s" '.connects_per_s'
  row "connect+subscribe p50 (µs)" '.connect_latency.p50_us'
  row "connect+subscribe p99 (µs)" '.connect_latency.p99_us'
  row "bench client RSS per TLS connection (bytes)" '.client_rss_per_conn_bytes'
} | tee "$OUT/table.md"
echo "JSON lines, HTML reports, commands and logs in $OUT" >&2
