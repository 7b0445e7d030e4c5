#!/usr/bin/env bash
# accept.sh LABEL [DUR]: gateway (parked mock, 1 worker) under 64-conn closed-loop loadgen; prints rps, CPU µs/send and KiB written per send (/proc/PID/io).
# env: FLOOR=1 runs floor-durable instead; PERF=1 records perf to /tmp/perf-LABEL.data; THREADS=1
# prints CPU per thread (threads.sh); KEEP=DIR keeps the data directory and the gateway's output; BIN; GWENV
set -u
LABEL=$1; DUR=${2:-10}
. "$(dirname "$0")/common.sh"
start_mock --latency fixed:600s
if [ "${FLOOR:-0}" = 1 ]; then
  (cd "$T/gw" && exec env THREADS=2 DB="$T/gw/floor.db" "$BIN/floor-durable") >"$T/gw.out" 2>"$T/gw.err" &
  GP=$!
  GURL=$(listening gw)
else
  start_gateway MAILGATE_WORKER__CONCURRENCY=1 MAILGATE_WORKER__CLAIM_BATCH=1
fi
THJ=""; if [ "${THREADS:-0}" = 1 ]; then ( sleep 4; "$(dirname "$0")/threads.sh" "$GP" 5 ) & THJ=$!; fi
PERFJ=""; if [ "${PERF:-0}" = 1 ]; then ( sleep 4; perf record -e cpu-clock -F 2000 -g --call-graph dwarf,8192 -p $GP -o /tmp/perf-$LABEL.data -- sleep 5 >/dev/null 2>&1 ) & PERFJ=$!; fi
g0=$(cpu $GP); w0=$(awk '/^write_bytes/ {print $2}' "/proc/$GP/io")
$BIN/loadgen --url "$GURL/v1/emails" --connections 64 ${RATE:+--rate $RATE} --warmup 2 --duration $DUR --auth $KEY --run-id $LABEL > $T/lg.json 2>/dev/null
g1=$(cpu $GP); w1=$(awk '/^write_bytes/ {print $2}' "/proc/$GP/io")
if [ -n "$PERFJ" ]; then wait "$PERFJ"; fi
if [ -n "$THJ" ]; then wait "$THJ"; fi
python3 - <<PY
import json; d=json.load(open("$T/lg.json")); n=d['ok']
L=d['latency_ms']; print(f"$LABEL rps={d['rps']:.0f} gw_us={($g1-$g0)*1e4/n:.1f} wkb={($w1-$w0)/1024/n:.2f} p50={L['p50']} p99={L['p99']} p999={L['p999']}")
PY
kill $GP $MP; wait $GP $MP 2>/dev/null
[ -n "${KEEP:-}" ] && cp -r $T/gw $T/gw.out $T/gw.err $KEEP; rm -rf $T
