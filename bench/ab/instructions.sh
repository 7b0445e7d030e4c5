#!/usr/bin/env bash
# instructions.sh LABEL [N]: instructions the gateway executes per accepted send (valgrind's
# callgrind: a count, not a time, so it repeats on a machine whose speed drifts), as accept.sh
# runs it (workers parked, 64 connections). The gateway runs under callgrind with instrumentation
# off; 500 sends warm it up; then N sends (default 2000) are counted, every thread of the
# process included. Prints Ir per send and the ten functions with the most (inclusive of what
# they call, `callgrind_annotate --inclusive=yes`). env: BIN, GWENV, KEEP=FILE (the callgrind
# output), FLOOR=1 (count `floor-durable` instead, for the ratio of the two). Under callgrind the gateway is ~50× slower while the load generator is not, so its
# group-commit turns are full (64 sends): compare variants with this script, not with accept.sh.
# WEBHOOKS=single (Postmark, one event a request, 64 connections) or arrays (SendGrid, 100 a
# request, 16 connections), as webhooks.sh: 2,000 sends are accepted and 50 requests warm up with
# the count off, then N requests (default 2000 single, 40 arrays) are counted; prints Ir per event.
# E2E=1: as e2e.sh (SES v2 to a mock at 0 ms, workers running), 500 messages sent and delivered
# with the count off, then N sent and counted until the mock has them all; prints Ir per
# delivered message (its acceptance, claim, request to the provider and completion); FAULTS sets
# the mock's error mix (as e2e.sh, e.g. 503:0.05,429:0.01,reset:0.001), whose failed attempts
# the count then includes. SHA-256 runs in software under valgrind (no SHA extensions), so
# SigV4 signing weighs several times what it does natively.
set -u
LABEL=$1; WEBHOOKS=${WEBHOOKS:-}
case "$WEBHOOKS" in
  "") N=${2:-2000}; PER=1 ;;
  single) N=${2:-2000}; PER=1 ;;
  arrays) N=${2:-40}; PER=100 ;;
  *) echo "WEBHOOKS is single or arrays" >&2; exit 2 ;;
esac
. "$(dirname "$0")/common.sh"
if [ "${E2E:-0}" = 1 ]; then start_mock --latency fixed:0ms --errors "${FAULTS:-none}"; else start_mock --latency fixed:600s; fi
if [ -n "$WEBHOOKS" ]; then
  SG_KEY=$("$BIN/loadgen" --print-sendgrid-key | python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.stdin.read().strip(), safe=""))')
  DSN="failover(postmark+api://PMTOKEN@default?endpoint=MOCK&webhook_username=bench&webhook_password=bench-webhook-secret sendgrid+api://SG.BENCH@default?endpoint=MOCK&webhook_public_key=$SG_KEY)"
fi
CG=(valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$T/cg.out")
if [ "${FLOOR:-0}" = 1 ]; then
  (cd "$T/gw" && exec env THREADS=2 DB="$T/gw/floor.db" "${CG[@]}" "$BIN/floor-durable") >"$T/gw.out" 2>"$T/gw.err" &
  GP=$!
  GURL=$(listening gw 1200)
elif [ "${E2E:-0}" = 1 ]; then
  GW_WRAP=("${CG[@]}")
  start_gateway MAILGATE_WORKER__CONCURRENCY=256 MAILGATE_WORKER__CLAIM_BATCH=64 \
    MAILGATE_WORKER__POLL_INTERVAL_MS=50 MAILGATE_RETRY__BASE_DELAY_MS=200 MAILGATE_RETRY__MAX_ATTEMPTS=20
else
  GW_WRAP=("${CG[@]}")
  start_gateway MAILGATE_WORKER__CONCURRENCY=1 MAILGATE_WORKER__CLAIM_BATCH=1
fi
[ -n "$GURL" ] || { echo "the gateway did not start under valgrind" >&2; tail -5 "$T/gw.err" >&2; kill "$GP" "$MP"; exit 1; }
if [ -n "$WEBHOOKS" ]; then
  "$BIN/loadgen" --url "$GURL/v1/emails" --connections 64 --requests 2000 --auth "$KEY" --run-id "w$LABEL" --ids-out "$T/wh.ids" >/dev/null 2>&1
  if [ "$WEBHOOKS" = single ]; then
    ARGS=(--url "$GURL/webhooks/default/postmark" --body postmark --basic bench:bench-webhook-secret --connections 64)
  else
    ARGS=(--url "$GURL/webhooks/default/sendgrid" --body sendgrid --batch 100 --connections 16)
  fi
  "$BIN/loadgen" "${ARGS[@]}" --ids-in "$T/wh.ids" --requests 50 --run-id "w$LABEL" >/dev/null 2>&1
  callgrind_control -i on "$GP" >/dev/null 2>&1
  "$BIN/loadgen" "${ARGS[@]}" --ids-in "$T/wh.ids" --requests "$N" --duration 3600 --run-id "$LABEL" >"$T/lg.json" 2>/dev/null
else
  "$BIN/loadgen" --url "$GURL/v1/emails" --connections 64 --requests 500 --auth "$KEY" --run-id "w$LABEL" >/dev/null 2>&1
  [ "${E2E:-0}" = 1 ] && curl -s "$MURL/stats/wait?unique_ids_2xx=500&timeout_ms=600000" >/dev/null
  callgrind_control -i on "$GP" >/dev/null 2>&1
  "$BIN/loadgen" --url "$GURL/v1/emails" --connections 64 --requests "$N" --auth "$KEY" --run-id "$LABEL" >"$T/lg.json" 2>/dev/null
  [ "${E2E:-0}" = 1 ] && curl -s "$MURL/stats/wait?unique_ids_2xx=$((500 + N))&timeout_ms=600000" >/dev/null
fi
callgrind_control -i off "$GP" >/dev/null 2>&1
got=$(curl -sf "$MURL/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["unique_ids_2xx"])' 2>/dev/null || echo 0)
kill -INT "$GP"; wait "$GP" 2>/dev/null
kill "$MP"; wait "$MP" 2>/dev/null
ok=$(python3 -c "import json; print(json.load(open('$T/lg.json'))['ok'])")
total=$(cat "$T"/cg.out* | awk '/^totals:/ {s += $2} END {print s}')
if [ -n "$WEBHOOKS" ]; then
  echo "$LABEL requests=$ok events=$((ok * PER)) Ir/event=$((total / (ok * PER)))"
elif [ "${E2E:-0}" = 1 ]; then
  echo "$LABEL sends=$ok delivered=$((got - 500)) Ir/delivered=$((total / ok))"
else
  echo "$LABEL sends=$ok Ir/send=$((total / ok))"
fi
callgrind_annotate --inclusive=yes "$T"/cg.out* 2>/dev/null | grep -E '^ *[0-9,]+ \(' | sed -n 2,11p | cut -c1-150
[ -n "${KEEP:-}" ] && cat "$T"/cg.out* >"$KEEP"
rm -rf "$T"
