#!/usr/bin/env bash
# e2e.sh LABEL N [ERRORS] : N sends to a 0 ms mock (SES), prints delivered/s, timeline, CPU per msg.
# env: BIN (default /work/target-rel/release), GWENV (extra env for the gateway)
set -u
LABEL=$1; N=$2; ERR=${3:-none}
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
T=$(mktemp -d /tmp/ab.XXXX)
KEY=mg_bench_admin_key_00000000000000000000000
$BIN/mailgate-mock-provider --latency fixed:0ms --errors "$ERR" --listen 127.0.0.1:0 >$T/mock.out 2>$T/mock.err &
MP=$!
for i in $(seq 200); do grep -q "listening on" $T/mock.out && break; sleep 0.05; done
MURL=$(grep -o 'http://[^ ]*' $T/mock.out | head -1)
mkdir -p $T/gw
(cd $T/gw && exec env RUST_LOG=warn MAILGATE_ADMIN_KEY=$KEY \
  MAILGATE_PROVIDER__DEFAULT="ses+api://AKIDBENCH:SECRETBENCH@default?region=us-east-1&endpoint=$MURL" \
  MAILGATE_RETENTION__CONTENT_DAYS=0 MAILGATE_WORKER__CONCURRENCY=256 MAILGATE_WORKER__CLAIM_BATCH=64 \
  MAILGATE_WORKER__POLL_INTERVAL_MS=50 MAILGATE_RETRY__BASE_DELAY_MS=200 MAILGATE_RETRY__MAX_ATTEMPTS=20 ${GWENV:-} \
  $BIN/mailgate serve --listen 127.0.0.1:0 --database sqlite://$T/gw/mg.db) >$T/gw.out 2>$T/gw.err &
GP=$!
for i in $(seq 200); do grep -q "listening on" $T/gw.out && break; sleep 0.05; done
GURL=$(grep -o 'http://[^ ]*' $T/gw.out | head -1)
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
mach() { awk '/^cpu /{print $2+$3+$4+$7+$8}' /proc/stat; }
g0=$(cpu $GP); m0=$(cpu $MP); s0=$(mach)
t0=$(date +%s.%N)
( $BIN/loadgen --url "$GURL/v1/emails" --connections 32 --requests $N --auth $KEY --run-id $LABEL >$T/lg.json 2>/dev/null; date +%s.%N > $T/lg.done ) &
LG=$!
last=""
while :; do
  got=$(curl -sf "$MURL/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["unique_ids_2xx"], d.get("requests", ""))')
  now=$(date +%s.%N)
  el=$(python3 -c "print(round($now-$t0,2))")
  echo "  t=$el got=$got" >> $T/timeline
  [ "${got%% *}" -ge "$N" ] && break
  sleep 0.25
done
t1=$(date +%s.%N)
wait $LG
g1=$(cpu $GP); m1=$(cpu $MP); s1=$(mach)
python3 - <<PY
t0=$t0; t1=$t1; lg=float(open("$T/lg.done").read()); n=$N
print(f"$LABEL delivered/s={n/(t1-t0):.0f} secs={t1-t0:.2f} accept_done={lg-t0:.2f} tail={t1-lg:.2f} gw_us={($g1-$g0)*1e4/n:.0f} mock_us={($m1-$m0)*1e4/n:.0f} mach_us={($s1-$s0)*1e4/n:.0f}")
PY
[ -n "${TIMELINE:-}" ] && tail -${TIMELINE} $T/timeline
curl -sf "$MURL/stats" | python3 -c 'import json,sys; d=json.load(sys.stdin); print({k:v for k,v in d.items() if not isinstance(v,(dict,list))})' 
kill $GP $MP; wait $GP $MP 2>/dev/null
rm -rf $T
