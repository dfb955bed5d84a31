#!/usr/bin/env bash
# Head-to-head check of two builds of our server on the same machine, alternating, with the same client:
# HTTP triggers (api scenario) and connect+subscribe (connect scenario). Loopback only.
#
#   bench/ab.sh REV          # REV: the build to compare the working tree with (e.g. the previous release)
#
# Knobs: OUT=/tmp/reverb-ab PORT=18090 ROUNDS=2 CONNS=10000
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REV="${1:?usage: bench/ab.sh REV}"
OUT="${OUT:-/tmp/reverb-ab}"; PORT="${PORT:-18090}"; ROUNDS="${ROUNDS:-2}"; CONNS="${CONNS:-10000}"
mkdir -p "$OUT"
cd "$ROOT"
go build -o "$OUT/reverb-new" ./cmd/reverb
rm -rf "$OUT/base-src"
git worktree add -q --detach "$OUT/base-src" "$REV"
(cd "$OUT/base-src" && go build -o "$OUT/reverb-base" ./cmd/reverb)
git worktree remove --force "$OUT/base-src"
P=""
trap '[ -n "$P" ] && kill "$P" 2>/dev/null || true' EXIT
B=(--port "$PORT" --app-id app-id --key app-key --secret app-secret --json --progress off)
for round in $(seq "$ROUNDS"); do
  for v in base new; do
    REVERB_APP_ID=app-id REVERB_APP_KEY=app-key REVERB_APP_SECRET=app-secret REVERB_APP_MAX_MESSAGE_SIZE=100000 \
      "$OUT/reverb-$v" start --host 127.0.0.1 --port "$PORT" >"$OUT/$v.log" 2>&1 &
    P=$!
    for _ in $(seq 50); do curl -fs "http://127.0.0.1:$PORT/up" >/dev/null && break; sleep 0.1; done
    api=$("$OUT/reverb-new" bench "${B[@]}" --server-pid "$P" --scenario api --connections 16 --payload 100 \
      --duration 8s --timeout 2m | jq -r '"\(.ops_per_s|floor) triggers/s, \(.server_proc.cpu_per_op_us) µs CPU each"')
    con=$("$OUT/reverb-new" bench "${B[@]}" --server-pid "$P" --scenario connect --connections "$CONNS" \
      --channels 100 --duration 2s --timeout 3m | jq -r '"\(.server_proc.cpu_per_op_us) µs CPU per connect+subscribe"')
    echo "round $round $v ($([ "$v" = base ] && echo "$REV" || echo working tree)): $api; $con"
    kill "$P"; wait "$P" 2>/dev/null || true; P=""
  done
done
