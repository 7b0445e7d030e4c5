#!/usr/bin/env bash
# threads.sh PID [SECS]: CPU % of a core per thread name of process PID over SECS (default 5),
# from /proc/PID/task/*/stat; the accept and webhook scripts run it with THREADS=1.
P=$1; S=${2:-5}
snap() { for t in /proc/$P/task/*; do echo "$(cat $t/comm 2>/dev/null | tr ' ' _) $(awk '{print $14+$15}' $t/stat 2>/dev/null) ${t##*/}"; done; }
D=$(mktemp -d)
snap > "$D/0"; sleep "$S"; snap > "$D/1"
python3 - "$S" "$D" <<'PY'
import sys, collections
S=float(sys.argv[1]); D=sys.argv[2]
a={l.split()[2]:(l.split()[0],int(l.split()[1])) for l in open(D+'/0') if len(l.split())==3}
b={l.split()[2]:(l.split()[0],int(l.split()[1])) for l in open(D+'/1') if len(l.split())==3}
g=collections.defaultdict(float)
for t,(n,v) in b.items():
    if t in a: g[n]+= (v-a[t][1])/S  # ticks/s = % of a core
for n,v in sorted(g.items(), key=lambda x:-x[1]):
    if v>0.5: print(f"{n:30s} {v:6.1f}%")
PY
rm -rf "$D"
