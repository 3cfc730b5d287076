#!/usr/bin/env bash
# How fast `gapless serve` is ready again (benches/BENCHMARKS.md, "restart").
#
#   tools/bench/restart-time.sh DATA PORT            # start, time /readyz, clean stop
#   tools/bench/restart-time.sh DATA PORT kill       # the same after a SIGKILL with a
#                                                    # journal to replay (100,000 messages
#                                                    # published at QoS 1 just before)
# The topic filter is bench-restart/#: a data directory whose broker session
# was made with other filters keeps those (see the closing note of issue 16).
# Needs a release build, a broker on 127.0.0.1:1883, mosquitto_pub and curl.
set -euo pipefail
G=${GAPLESS:-${CARGO_TARGET_DIR:-target}/release/gapless}
DATA=$1 PORT=$2 MODE=${3:-clean}
export GAPLESS_API_TOKEN=bench
serve() {
  "$G" serve --data "$DATA" --audit-key-in-data --http "127.0.0.1:$PORT" \
    --topic "bench-restart/#" --seal-max-age 3600 >"$1" 2>&1 &
  pid=$!
}
ready() {
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$PORT/readyz")" = 200 ]; do
    kill -0 "$pid" 2>/dev/null || { echo "serve died:"; tail -5 "$1"; exit 1; }
    sleep 0.05
  done
}
if [ "$MODE" = kill ]; then
  serve /tmp/restart-1.log
  ready /tmp/restart-1.log
  python3 -c '
for i in range(100000):
    print("{\"meter_id\":\"K-%06d\",\"medium\":\"water\",\"register\":\"total\",\"unit\":\"m3\",\"value\":\"%d.5\",\"ts\":\"2022-07-29T%02d:00:00Z\"}" % (i % 5000, i, i // 5000))
' | mosquitto_pub -h 127.0.0.1 -p 1883 -q 1 -t bench-restart/k -l
  sleep 0.2
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
fi
t0=$(date +%s.%N)
serve /tmp/restart-2.log
ready /tmp/restart-2.log
t1=$(date +%s.%N)
echo "ready after $(echo "$t1 - $t0" | bc) s; VmRSS $(awk '/VmRSS/{print $2}' "/proc/$pid/status") kB"
grep -oE 'ingest: state (from|rebuilt)[^=]*|state_bytes=[0-9]+|to_replay=[0-9]+' /tmp/restart-2.log || true
sleep 2
kill -TERM "$pid"
wait "$pid" || true
grep -E 'store: sealed' /tmp/restart-2.log | cut -c1-160 || true
