#!/usr/bin/env bash
# webhooks.sh LABEL [DUR]: the webhooks_batch100 scenario of bench/run alone — 10,000 sends
# accepted (Postmark and SendGrid parked in the chain), then SendGrid arrays of 100 `delivered`
# events about them over 16 connections; prints events stored/s, the gateway's CPU per event and
# the bytes it wrote per event (/proc/PID/io). SINGLE=1: Postmark, one event per request, 64
# connections (webhooks_single). env: BIN, GWENV, PERF=1 and THREADS=1 (as accept.sh), KEEP=FILE
# (keeps the gateway's stderr), KEEPDB=DIR (a copy of its data directory), CONNS (SendGrid
# connections, default 16).
set -u
LABEL=$1; DUR=${2:-10}
. "$(dirname "$0")/common.sh"
start_mock --latency fixed:600s
SG_KEY=$("$BIN/loadgen" --print-sendgrid-key | python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read().strip(), safe=""))')
start_gateway MAILGATE_WORKER__CONCURRENCY=1 MAILGATE_WORKER__CLAIM_BATCH=1 \
  MAILGATE_PROVIDER__DEFAULT="failover(postmark+api://PMTOKEN@default?endpoint=$MURL&webhook_username=bench&webhook_password=bench-webhook-secret sendgrid+api://SG.BENCH@default?endpoint=$MURL&webhook_public_key=$SG_KEY)"
"$BIN/loadgen" --url "$GURL/v1/emails" --connections 32 --requests 10000 --auth "$KEY" \
  --run-id "wh$LABEL" --ids-out "$T/wh.ids" >/dev/null
if [ "${SINGLE:-0}" = 1 ]; then
  ARGS=(--url "$GURL/webhooks/default/postmark" --body postmark --basic bench:bench-webhook-secret --connections 64)
else
  ARGS=(--url "$GURL/webhooks/default/sendgrid" --body sendgrid --batch 100 --connections ${CONNS:-16})
fi
THJ=""; if [ "${THREADS:-0}" = 1 ]; then ( sleep 4; "$(dirname "$0")/threads.sh" "$GP" 5 ) & THJ=$!; fi
PERFJ=""; if [ "${PERF:-0}" = 1 ]; then ( sleep 4; perf record -e cpu-clock -F 2000 -g --call-graph dwarf,8192 -p "$GP" -o "/tmp/perf-$LABEL.data" -- sleep 5 >/dev/null 2>&1 ) & PERFJ=$!; fi
g0=$(cpu "$GP"); w0=$(awk '/^write_bytes/ {print $2}' "/proc/$GP/io")
"$BIN/loadgen" "${ARGS[@]}" --ids-in "$T/wh.ids" --warmup 2 --duration "$DUR" --run-id "w$LABEL" >"$T/lg.json" 2>/dev/null
g1=$(cpu "$GP"); w1=$(awk '/^write_bytes/ {print $2}' "/proc/$GP/io")
if [ -n "$PERFJ" ]; then wait "$PERFJ"; fi
if [ -n "$THJ" ]; then wait "$THJ"; fi
python3 - "$T/lg.json" "$LABEL" "$g0" "$g1" "$w0" "$w1" "${SINGLE:-0}" "$DUR" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); label = sys.argv[2]
g0, g1, w0, w1 = map(int, sys.argv[3:7]); per = 1 if sys.argv[7] == "1" else 100
# CPU and bytes cover the 2 s warm-up too: divided by the events of the whole run, estimated.
total = d["rps"] * per * (int(sys.argv[8]) + 2)
print(f"{label} events/s={d['rps'] * per:.0f} non2xx={d['non2xx']} gw_us/event~{(g1 - g0) * 1e4 / total:.1f} "
      f"written/event~{(w1 - w0) / total:.0f} B p99={d['latency_ms']['p99']} ms")
PY
kill "$GP" "$MP"; wait "$GP" "$MP" 2>/dev/null
[ -n "${KEEP:-}" ] && cp "$T/gw.err" "$KEEP"
[ -n "${KEEPDB:-}" ] && rm -rf "$KEEPDB" && cp -r "$T/gw" "$KEEPDB"
rm -rf "$T"
