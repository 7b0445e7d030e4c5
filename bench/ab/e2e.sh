#!/usr/bin/env bash
# e2e.sh LABEL N [ERRORS] : N sends to a 0 ms mock (SES), prints delivered/s, timeline, CPU and
# bytes written (/proc/PID/io) per message.
# env: BIN (default $CARGO_TARGET_DIR/release), GWENV (extra settings for the gateway), TIMELINE=N,
#      DSN (the provider, MOCK for the mock's URL; default SES), KEEP=FILE (the gateway's stderr),
#      KEEPDB=DIR (a copy of its data directory), CONNS (loadgen connections, default 64 as e2e_0ms)
set -u
LABEL=$1; N=$2; ERR=${3:-none}
. "$(dirname "$0")/common.sh"
start_mock --latency fixed:0ms --errors "$ERR"
start_gateway MAILGATE_WORKER__CONCURRENCY=256 MAILGATE_WORKER__CLAIM_BATCH=64 \
  MAILGATE_WORKER__POLL_INTERVAL_MS=50 MAILGATE_RETRY__BASE_DELAY_MS=200 MAILGATE_RETRY__MAX_ATTEMPTS=20
mach() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
g0=$(cpu $GP); m0=$(cpu $MP); s0=$(mach); w0=$(awk '/^write_bytes/ {print $2}' /proc/$GP/io)
t0=$(date +%s.%N)
( $BIN/loadgen --url "$GURL/v1/emails" --connections ${CONNS:-64} --requests $N --auth $KEY --run-id $LABEL >$T/lg.json 2>/dev/null; date +%s.%N > $T/lg.done ) &
LG=$!
if [ -n "${TIMELINE:-}" ]; then
  # Sampling the count costs CPU (a Python process every 0.25 s): only when asked for.
  while :; do
    got=$(curl -sf "$MURL/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["unique_ids_2xx"], d.get("requests", ""))')
    now=$(date +%s.%N)
    el=$(python3 -c "print(round($now-$t0,2))")
    echo "  t=$el got=$got" >> $T/timeline
    [ "${got%% *}" -ge "$N" ] && break
    # Something is lost (or stuck): stop waiting after 10 minutes; the counters below say what.
    if [ "$(date +%s)" -gt "$(( ${t0%.*} + 600 ))" ]; then echo "$LABEL: gave up after 600 s at $got" >&2; break; fi
    sleep 0.25
  done
else
  # One request the mock answers once N ids were delivered (bench/run waits the same way).
  curl -s "$MURL/stats/wait?unique_ids_2xx=$N&timeout_ms=600000" >/dev/null
fi
t1=$(curl -sf "$MURL/stats" | python3 -c 'import json,sys,time; print(json.load(sys.stdin).get("last_new_2xx_at") or time.time())')
wait $LG
g1=$(cpu $GP); m1=$(cpu $MP); s1=$(mach); w1=$(awk '/^write_bytes/ {print $2}' /proc/$GP/io)
python3 - <<PY
t0=$t0; t1=$t1; lg=float(open("$T/lg.done").read()); n=$N
print(f"$LABEL delivered/s={n/(t1-t0):.0f} secs={t1-t0:.2f} accept_done={lg-t0:.2f} tail={t1-lg:.2f} gw_us={($g1-$g0)*1e4/n:.0f} mock_us={($m1-$m0)*1e4/n:.0f} mach_us={($s1-$s0)*1e4/n:.0f} written/msg={($w1-$w0)/n:.0f} B")
PY
[ -n "${TIMELINE:-}" ] && tail -${TIMELINE} $T/timeline
curl -sf "$MURL/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k:v for k,v in d.items() if not isinstance(v,(dict,list))})' 
kill $GP $MP; wait $GP $MP 2>/dev/null
[ -n "${KEEP:-}" ] && cp "$T/gw.err" "$KEEP"
[ -n "${KEEPDB:-}" ] && rm -rf "$KEEPDB" && cp -r "$T/gw" "$KEEPDB"
rm -rf $T
