#!/usr/bin/env bash
# instructions.sh LABEL [N]: instructions the gateway executes per accepted send (valgrind's
# callgrind: a count, not a time, so it repeats on a machine whose speed drifts), as accept.sh
# runs it (workers parked, 64 connections). The gateway runs under callgrind with instrumentation
# off; 500 sends warm it up; then N sends (default 2000) are counted, every thread of the
# process included. Prints Ir per send and the ten functions with the most (inclusive of what
# they call, `callgrind_annotate --inclusive=yes`). env: BIN, GWENV, KEEP=FILE (the callgrind
# output), FLOOR=1 (count `floor-durable` instead, for the ratio of the two). Under callgrind the gateway is ~50× slower while the load generator is not, so its
# group-commit turns are full (64 sends): compare variants with this script, not with accept.sh.
set -u
LABEL=$1; N=${2:-2000}
. "$(dirname "$0")/common.sh"
start_mock --latency fixed:600s
CG=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/cg.out")
if [ "${FLOOR:-0}" = 1 ]; then
  (cd "$T/gw" && exec env THREADS=2 DB="$T/gw/floor.db" "${CG[@]}" "$BIN/floor-durable") >"$T/gw.out" 2>"$T/gw.err" &
  GP=$!
  GURL=$(listening gw 1200)
else
  GW_WRAP=("${CG[@]}")
  start_gateway MAILGATE_WORKER__CONCURRENCY=1 MAILGATE_WORKER__CLAIM_BATCH=1
fi
[ -n "$GURL" ] || { echo "the gateway did not start under valgrind" >&2; tail -5 "$T/gw.err" >&2; kill "$GP" "$MP"; exit 1; }
"$BIN/loadgen" --url "$GURL/v1/emails" --connections 64 --requests 500 --auth "$KEY" --run-id "w$LABEL" >/dev/null 2>&1
callgrind_control -i on "$GP" >/dev/null 2>&1
"$BIN/loadgen" --url "$GURL/v1/emails" --connections 64 --requests "$N" --auth "$KEY" --run-id "$LABEL" >"$T/lg.json" 2>/dev/null
callgrind_control -i off "$GP" >/dev/null 2>&1
kill -INT "$GP"; wait "$GP" 2>/dev/null
kill "$MP"; wait "$MP" 2>/dev/null
ok=$(python3 -c "import json; print(json.load(open('$T/lg.json'))['ok'])")
total=$(cat "$T"/cg.out* | awk '/^totals:/ {s += $2} END {print s}')
echo "$LABEL sends=$ok Ir/send=$((total / ok))"
callgrind_annotate --inclusive=yes "$T"/cg.out* 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed -n 2,11p | cut -c1-150
[ -n "${KEEP:-}" ] && cat "$T"/cg.out* >"$KEEP"
rm -rf "$T"
