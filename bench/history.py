#!/usr/bin/env python3
"""Every full benchmark run at a glance: one Markdown row per run, one column per goal.

    python3 bench/history.py [RESULTS_DIR]    # default bench/results; prints Markdown

Reads the `<utc-date>-<sha>.json` files `bench/run` writes (smoke runs, `--only` runs and the
partial files of failed runs are left out: they do not measure every goal). A cell is the
run's figure for the goal; a miss is in bold with a cross. The floor's accept rate and the
machine's fdatasync rate come first, because several goals are absolute figures that follow the
machine's speed.
"""

import glob
import json
import os
import sys

# (column heading, the goal's name in the report, how to print its value)
COLUMNS = [
    ("accept ÷ floor", "accepted sends/s (SQLite) vs durable floor", "{:.2f}"),
    ("PostgreSQL ÷ pgbench", "accepted sends/s (PostgreSQL) vs pgbench 8 clients", "{:.2f}"),
    ("p99 at 5k (ms)", "p99 latency at 5,000 sends/s (ms)", "{:.2f}"),
    ("end to end ÷ Postfix", "delivered/s to the mock (0 ms) vs Postfix relay", "{:.2f}"),
    ("200 ms mock (/s)", "delivered/s with mock p50 200 ms", "{:,.0f}"),
    ("faults ÷ fault-free", "faults: delivered/s vs fault-free", "{:.2f}"),
    ("lost", "faults: lost messages", "{:.0f}"),
    ("webhooks single (/s)", "webhook events stored/s, one per request (Postmark)", "{:,.0f}"),
    ("webhooks arrays (/s)", "webhook events stored/s, arrays of 100 (SendGrid)", "{:,.0f}"),
    ("claim 1M ÷ 10k", "claim p99 with the big queue vs 10k", "{:.2f}"),
    ("idle MB", "memory idle (MB)", "{:.1f}"),
    ("MB per 100k", "memory per 100k queued (MB)", "{:.2f}"),
    ("cold empty (ms)", "cold start, empty (ms)", "{:.0f}"),
    ("cold 1M (ms)", "cold start with the big queue (ms)", "{:.0f}"),
]


def full_runs(directory):
    """The full runs' reports, oldest first."""
    runs = []
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        name = os.path.basename(path)
        if name.startswith("partial-") or "-smoke" in name or "-only-" in name:
            continue
        with open(path) as f:
            report = json.load(f)
        if report.get("smoke"):
            continue
        runs.append((name[: -len(".json")], report))
    return runs


def cpu_kind(machine):
    cpu = machine.get("cpu", "?")
    return "Intel Xeon" if "Xeon" in cpu else "AMD EPYC" if "EPYC" in cpu else cpu


def cell(goal, fmt):
    if goal is None:
        return "—"
    text = fmt.format(goal["value"])
    if text == fmt.format(goal["threshold"]) and not goal["pass"]:
        # A miss that rounds to the threshold (0.4996 against 0.5) shows its next digit.
        text = "{:.3f}".format(goal["value"])
    return text if goal["pass"] else f"**{text}** ✗"


def table(runs):
    head = ["run", "machine", "fdatasync/s", "floor accepts/s"] + [c[0] for c in COLUMNS]
    head.append("misses")
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name, report in runs:
        machine = report.get("machine", {})
        goals = {g["goal"]: g for g in report.get("goals", [])}
        floor = report.get("figures", {}).get("accept_sqlite_floor_rps", {})
        floor = floor.get("median") if isinstance(floor, dict) else floor
        fsync = machine.get("fdatasync_per_s")
        row = [
            name + (" (dirty tree)" if machine.get("dirty_tree") else ""),
            cpu_kind(machine),
            f"{float(fsync):,.0f}" if fsync else "—",
            f"{floor:,.0f}" if isinstance(floor, (int, float)) else "—",
        ]
        row += [cell(goals.get(goal), fmt) for _, goal, fmt in COLUMNS]
        row.append(str(sum(1 for g in goals.values() if not g["pass"])))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main():
    directory = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "results"
    )
    runs = full_runs(directory)
    if not runs:
        sys.exit(f"no full runs in {directory}")
    print(table(runs))


if __name__ == "__main__":
    main()
