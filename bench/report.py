#!/usr/bin/env python3
"""Turns bench/run's raw results (JSON lines) into bench/results/<date>-<sha>.{json,md}:
medians of the interleaved repetitions, min and max, ratios and each goal's pass or fail."""
import datetime
import json
import os
import statistics
import sys

raw_path, out_dir, smoke = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rows = [json.loads(l) for l in open(raw_path) if l.strip()]
machine = next(r for r in rows if r["scenario"] == "machine")
machine["loadavg_end"] = open("/proc/loadavg").read().split()[:3]


def values(scenario, variant, path):
    out = []
    for r in rows:
        if r.get("scenario") == scenario and r.get("variant") == variant:
            v = r["r"]
            for k in path.split("."):
                v = v.get(k) if isinstance(v, dict) else None
            if v is not None:
                out.append(float(v))
    return out


def summary(vals):
    if not vals:
        return None
    med = statistics.median(vals)
    spread = (max(vals) - min(vals)) / med if med else 0.0
    return {"median": med, "min": min(vals), "max": max(vals), "n": len(vals), "noisy": spread > 0.10}


figures = {}
for key, scen, var, path in [
    ("accept_sqlite_floor_rps", "accept_sqlite", "floor", "rps"),
    ("accept_sqlite_gateway_rps", "accept_sqlite", "gateway", "rps"),
    ("accept_pg_pgbench8_tps", "accept_pg", "floor", "rps"),
    ("accept_pg_gateway_rps", "accept_pg", "gateway", "rps"),
    ("latency_1k_floor_p99_ms", "latency_1k", "floor", "latency_ms.p99"),
    ("latency_1k_gateway_p50_ms", "latency_1k", "gateway", "latency_ms.p50"),
    ("latency_1k_gateway_p99_ms", "latency_1k", "gateway", "latency_ms.p99"),
    ("latency_5k_floor_p99_ms", "latency_5k", "floor", "latency_ms.p99"),
    ("latency_5k_gateway_p50_ms", "latency_5k", "gateway", "latency_ms.p50"),
    ("latency_5k_gateway_p99_ms", "latency_5k", "gateway", "latency_ms.p99"),
    ("latency_5k_gateway_p999_ms", "latency_5k", "gateway", "latency_ms.p999"),
    ("latency_5k_gateway_rps", "latency_5k", "gateway", "rps"),
    ("latency_5k_gateway_non2xx", "latency_5k", "gateway", "non2xx"),
    ("e2e_0ms_delivered_per_s", "e2e_0ms", "gateway", "delivered_per_s"),
    ("e2e_0ms_postfix_relayed_per_s", "e2e_0ms", "postfix", "relayed_per_s"),
    ("e2e_0ms_lost", "e2e_0ms", "gateway", "lost"),
    ("e2e_200ms_delivered_per_s", "e2e_200ms", "gateway", "delivered_per_s"),
    ("e2e_200ms_lost", "e2e_200ms", "gateway", "lost"),
    ("e2e_faults_delivered_per_s", "e2e_faults", "gateway", "delivered_per_s"),
    ("e2e_fault_free_long_delivered_per_s", "e2e_fault_free_long", "gateway", "delivered_per_s"),
    ("e2e_faults_acknowledged", "e2e_faults", "gateway", "acknowledged"),
    ("e2e_faults_lost", "e2e_faults", "gateway", "lost"),
    ("e2e_faults_duplicates", "e2e_faults", "gateway", "duplicates"),
    ("webhooks_single_events_per_s", "webhooks_single", "gateway", "events_per_s"),
    ("webhooks_single_p99_ms", "webhooks_single", "gateway", "latency_ms.p99"),
    ("webhooks_single_non2xx", "webhooks_single", "gateway", "non2xx"),
    ("webhooks_batch100_events_per_s", "webhooks_batch100", "gateway", "events_per_s"),
    ("webhooks_batch100_p99_ms", "webhooks_batch100", "gateway", "latency_ms.p99"),
    ("webhooks_batch100_non2xx", "webhooks_batch100", "gateway", "non2xx"),
    ("memory_idle_kb", "memory", "gateway", "idle_kb"),
    ("memory_warm_kb", "memory", "gateway", "warm_kb"),
    ("memory_warm_n", "memory", "gateway", "warm_n"),
    ("memory_queued_kb", "memory", "gateway", "queued_kb"),
    ("memory_queued_n", "memory", "gateway", "queued"),
    ("cold_start_floor_ms", "cold_start", "floor", "ms"),
    ("cold_start_gateway_ms", "cold_start", "gateway", "ms"),
    ("cold_start_queued_ms", "cold_start_queued", "gateway", "ms"),
    ("claim_small_p99_ms", "claim", "q10000", "claim_ms.p99"),
    ("claim_small_p50_ms", "claim", "q10000", "claim_ms.p50"),
    ("cold_start_big_ms", "cold_start_big", "gateway", "ms"),
    ("cold_start_big_queued", "cold_start_big", "gateway", "queued"),
]:
    s = summary(values(scen, var, path))
    if s:
        figures[key] = s


# The big claim run's variant is q<N>, N set by bench/run (1M, or 100k in a smoke run).
big = [r for r in rows if r.get("scenario") == "claim" and r.get("variant") != "q10000"]
if big:
    variant = big[0]["variant"]
    for key, path in [("claim_big_p99_ms", "claim_ms.p99"), ("claim_big_p50_ms", "claim_ms.p50"),
                      ("claim_big_queued", "queued"), ("claim_big_fill_per_s", "fill_per_s")]:
        s_ = summary(values("claim", variant, path))
        if s_:
            figures[key] = s_


def med(k):
    return figures[k]["median"] if k in figures else None


def ratio(a, b):
    return a / b if a is not None and b else None


POSTFIX_RELAY_REFERENCE = 946.0  # reference/performance.md §4.6, used only when Postfix could not run
postfix_measured = med("e2e_0ms_postfix_relayed_per_s") is not None
postfix = med("e2e_0ms_postfix_relayed_per_s") if postfix_measured else POSTFIX_RELAY_REFERENCE
ratios = {
    "accept_sqlite_vs_floor": ratio(med("accept_sqlite_gateway_rps"), med("accept_sqlite_floor_rps")),
    "accept_pg_vs_pgbench8": ratio(med("accept_pg_gateway_rps"), med("accept_pg_pgbench8_tps")),
    "latency_5k_p99_vs_floor": ratio(med("latency_5k_gateway_p99_ms"), med("latency_5k_floor_p99_ms")),
    "e2e_vs_postfix": ratio(med("e2e_0ms_delivered_per_s"), postfix),
    "claim_p99_big_vs_10k": ratio(med("claim_big_p99_ms"), med("claim_small_p99_ms")),
    # The fault run and its fault-free twin deliver the same (larger) number of messages, back to
    # back: the retry tail (a few messages refused three times wait 0.2 + 0.4 + 0.8 s) is a fixed
    # time that a 30,000-message run of ~5 s would mostly measure instead of the rate. Three
    # pairs, interleaved, in a full run: the median of each.
    "e2e_faults_vs_fault_free": ratio(med("e2e_faults_delivered_per_s"),
                                      med("e2e_fault_free_long_delivered_per_s")),
}
# Per queued message: the growth from the warmed-up process (after the first sends) to the one
# holding MEM_N more queued; the one-time warm-up is reported beside it.
mem_per_100k = mem_warmup = None
if med("memory_queued_kb") is not None and med("memory_warm_kb") is not None:
    mem_per_100k = (med("memory_queued_kb") - med("memory_warm_kb")) / 1024 * 100_000 / med("memory_queued_n")
    mem_warmup = (med("memory_warm_kb") - med("memory_idle_kb")) / 1024


def goal(name, value, op, threshold, note=""):
    ok = None if value is None else (value >= threshold if op == ">=" else value <= threshold)
    return {"goal": name, "value": value, "op": op, "threshold": threshold, "pass": ok, "note": note}


goals = [
    goal("accepted sends/s (SQLite) vs durable floor", ratios["accept_sqlite_vs_floor"], ">=", 0.5),
    goal("accepted sends/s (PostgreSQL) vs pgbench 8 clients", ratios["accept_pg_vs_pgbench8"], ">=", 0.3),
    goal("p99 latency at 5,000 sends/s (ms)", med("latency_5k_gateway_p99_ms"), "<=", 5.0),
    goal("delivered/s to the mock (0 ms) vs Postfix relay", ratios["e2e_vs_postfix"], ">=", 10.0,
         "Postfix relayed the same messages in this run, interleaved" if postfix_measured
         else "Postfix could not run: 946/s from reference/performance.md §4.6"),
    goal("delivered/s with mock p50 200 ms", med("e2e_200ms_delivered_per_s"), ">=", 2000.0),
    goal("faults: delivered/s vs fault-free", ratios["e2e_faults_vs_fault_free"], ">=", 0.9),
    goal("faults: lost messages", med("e2e_faults_lost"), "<=", 0.0),
    goal("webhook events stored/s, one per request (Postmark)", med("webhooks_single_events_per_s"), ">=", 10000.0),
    goal("webhook events stored/s, arrays of 100 (SendGrid)", med("webhooks_batch100_events_per_s"), ">=", 50000.0),
    goal("memory idle (MB)", None if med("memory_idle_kb") is None else med("memory_idle_kb") / 1024, "<=", 64.0),
    goal("memory per 100k queued (MB)", mem_per_100k, "<=", 10.0,
         "" if mem_warmup is None else
         f"growth after the first {int(med('memory_warm_n')):,} sends; those added {mem_warmup:.1f} MB once"),
    goal("claim p99 with the big queue vs 10k", ratios["claim_p99_big_vs_10k"], "<=", 1.25,
         f"{int(med('claim_big_queued') or 0):,} queued"),
    goal("cold start, empty (ms)", med("cold_start_gateway_ms"), "<=", 200.0),
    goal("cold start with the big queue (ms)", med("cold_start_big_ms"), "<=", 1000.0,
         f"{int(med('cold_start_big_queued') or 0):,} queued"),
    goal("cold start with the memory run's queue (ms)", med("cold_start_queued_ms"), "<=", 1000.0,
         f"{int((med('memory_queued_n') or 0) + (med('memory_warm_n') or 0)):,} queued"),
]

now = datetime.datetime.now(datetime.timezone.utc)
only = os.environ.get("BENCH_ONLY", "").split()
stem = (f"{now:%Y%m%d-%H%M%S}-{machine['git_sha']}" + ("-smoke" if smoke else "")
        + ("-only-" + "-".join(only) if only else ""))
report = {"generated_at": now.isoformat(), "smoke": smoke, "machine": machine, "figures": figures,
          "ratios": ratios, "goals": goals, "raw": rows}
json.dump(report, open(f"{out_dir}/{stem}.json", "w"), indent=2)


def fmt(v):
    if v is None:
        return "n/a"
    return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"


md = [f"# mailgate bench {stem}", "",
      f"{machine['nproc']} × {machine['cpu']}, kernel {machine['kernel']}, load average "
      f"{' '.join(machine['loadavg_start'])} at start, {' '.join(machine['loadavg_end'])} at end"
      + (", **smoke run (1 repetition, short)**" if smoke else "")
      + (f", **only: {', '.join(only)}**" if only else "")
      + (f", **{machine.get('profile')} binaries: not a speed measurement**"
         if machine.get("profile", "release") != "release" else ""), "",
      "| figure | median | min | max | n |", "| --- | --- | --- | --- | --- |"]
for k, s in figures.items():
    md.append(f"| {k} | {fmt(s['median'])} | {fmt(s['min'])} | {fmt(s['max'])} | {s['n']}{' noisy' if s['noisy'] else ''} |")
md += ["", "| goal | value | target | result |", "| --- | --- | --- | --- |"]
for g in goals:
    res = "n/a" if g["pass"] is None else ("pass" if g["pass"] else "**miss**")
    md.append(f"| {g['goal']} | {fmt(g['value'])} | {g['op']} {fmt(g['threshold'])} | {res}{' — ' + g['note'] if g['note'] else ''} |")
open(f"{out_dir}/{stem}.md", "w").write("\n".join(md) + "\n")
print("\n".join(md))
print(f"\nwritten: {out_dir}/{stem}.json and .md")
