#!/bin/sh
# One server, both variants back to back against it.
B=${REVERB:-./reverb}
$B start --config ${CONFIG:-reverb.toml} > server.log 2>&1 &
SP=$!
sleep 1
for v in plain deflate plain deflate; do
  F=""; [ $v = deflate ] && F="--deflate"
  echo "== $v"
  $B bench --config ${CONFIG:-reverb.toml} --scenario fanout --connections 2000 --channels 1 --rate 20 --duration 15s \
     --payload 1000 --json-payload $F --server-pid $SP --progress off 2>&1 | grep -E "deliveries|wire bytes|server CPU|client CPU|latency|connections|error"
done
kill $SP
