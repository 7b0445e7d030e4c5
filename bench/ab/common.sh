# Sourced by the bench/ab scripts: binaries, a temp dir, and starting the mock and the gateway.
BIN=${BIN:-${CARGO_TARGET_DIR:-target}/release}
T=$(mktemp -d /tmp/ab.XXXX)
KEY=mg_bench_admin_key_00000000000000000000000
mkdir -p "$T/gw"

# listening NAME [TRIES]: waits (TRIES × 50 ms, default 200) for "listening on URL" in
# $T/NAME.out and prints the URL.
listening() {
  for _ in $(seq "${2:-200}"); do grep -q "listening on" "$T/$1.out" && break; sleep 0.05; done
  grep -o 'http://[^ ]*' "$T/$1.out" | head -1
}

# start_mock ARGS...: the mock provider; sets MP (its PID) and MURL.
start_mock() {
  "$BIN/mailgate-mock-provider" --listen 127.0.0.1:0 "$@" >"$T/mock.out" 2>"$T/mock.err" &
  MP=$!
  MURL=$(listening mock)
}

# start_gateway ENV=VALUE...: `mailgate serve` on a fresh SQLite file in $T/gw, its provider
# $DSN (default SES; MOCK in it stands for the mock's URL), plus the settings given and $GWENV;
# sets GP and GURL. GW_WRAP (an array) runs it under another program (instructions.sh: valgrind),
# whose slower start-up is waited for up to a minute.
DSN=${DSN:-ses+api://AKIDBENCH:SECRETBENCH@default?region=us-east-1&endpoint=MOCK}
start_gateway() {
  # shellcheck disable=SC2086 # GWENV is a list of settings
  (cd "$T/gw" && exec env RUST_LOG=warn MAILGATE_ADMIN_KEY=$KEY \
    MAILGATE_PROVIDER__DEFAULT="${DSN//MOCK/${MURL:-}}" \
    MAILGATE_RETENTION__CONTENT_DAYS=0 "$@" ${GWENV:-} \
    ${GW_WRAP[@]+"${GW_WRAP[@]}"} "$BIN/mailgate" serve --listen 127.0.0.1:0 \
    --database "sqlite://$T/gw/mg.db") >"$T/gw.out" 2>"$T/gw.err" &
  GP=$!
  GURL=$(listening gw "$([ -n "${GW_WRAP+x}" ] && echo 1200 || echo 200)")
}

# cpu PID: its user + system ticks.
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
