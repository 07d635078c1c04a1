#!/usr/bin/env python3
"""The rate scenario's figures (bench/rate.sh): one JSON file per row and round, and the
section of bench/results.md they make.

  rate_report.py row --round N --row NAME --label TEXT --cpu-ticks T --ticks-per-sec HZ
      --rss-kib K --hwm-kib K --redis-cpu-ticks T --load-before L --load-after L
      [--metrics-before SCRAPE --metrics-after SCRAPE] < generator-output.json
          the row's JSON on stdout: the generator's figures plus CPU per 1,000 requests,
          RSS, load, and graphgate's state store operations per request (from /metrics)
  rate_report.py from-oha RATE CONNECTIONS SECONDS < oha-output.json
          oha's --output-format json in examples/rate.rs's shape (for LOADGEN=oha)
  rate_report.py brief ROW.json
          one line for the console
  rate_report.py meta RATE_DIR REPO start|end
          RATE_DIR/run.json: date, commit, cores, pinning, load average at start and end
  rate_report.py render RATE_DIR RESULTS.md
          replaces (or appends) the section between the rate markers of RESULTS.md; exits 1
          if a row had errors or answers other than 2xx

bench/report.py keeps the section when other scenarios rewrite results.md.
"""
import argparse
import datetime
import glob
import json
import os
import re
import subprocess
import sys

BEGIN = "<!-- rate:begin -->"
END = "<!-- rate:end -->"
# Issue 26's goals for the Redis path with every store step, at the rate.
GOALS = {"p50": 500.0, "p99": 2000.0, "cpu": 0.2, "rss_mib": 30.0}
ORDER = ["nginx", "memory", "redis", "redis-keyed", "memory-budget", "mtls", "jwt"]


def row(args):
    gen = json.load(sys.stdin)
    answered = max(gen["answered"], 1)
    cpu_s = args.cpu_ticks / args.ticks_per_sec
    gen.update(
        round=args.round, row=args.row, label=args.label, cpu_s=cpu_s,
        cpu_per_1000=cpu_s / answered * 1000, redis_cpu_per_1000=args.redis_cpu_ticks / args.ticks_per_sec / answered * 1000,
        rss_kib=args.rss_kib, hwm_kib=args.hwm_kib, load_before=args.load_before, load_after=args.load_after,
        store_ops=store_ops(args.metrics_before, args.metrics_after, answered))
    json.dump(gen, sys.stdout)
    print()


def from_oha(rate, connections, duration):
    """oha's --output-format json, as examples/rate.rs reports (seconds become µs)."""
    o = json.load(sys.stdin)
    pct = o["latencyPercentiles"]
    us = lambda key: (pct.get(key) or 0.0) * 1e6
    statuses = {str(k): int(v) for k, v in o["statusCodeDistribution"].items()}
    answered = sum(statuses.values())
    ok = sum(v for k, v in statuses.items() if k.startswith("2"))
    errors = sum(o["errorDistribution"].values())
    json.dump({
        "generator": "oha", "rate": float(rate), "connections": int(connections), "duration_s": float(duration),
        "elapsed_s": o["summary"]["total"], "released": answered + errors, "answered": answered, "ok": ok,
        "not_ok": answered - ok, "errors": errors, "unfinished": 0, "gave_up": False,
        "error_samples": sorted(o["errorDistribution"])[:5], "statuses": statuses,
        "achieved_rps": o["summary"]["requestsPerSec"],
        "latency_us": {"p50": us("p50"), "p90": us("p90"), "p99": us("p99"), "p999": us("p99.9"),
                       "max": (o["summary"]["slowest"] or 0.0) * 1e6, "mean": (o["summary"]["average"] or 0.0) * 1e6},
        "release_lag_us": None,
    }, sys.stdout)
    print()


def op_counts(path):
    """graphgate_state_store_duration_seconds_count by op, from a /metrics scrape."""
    counts = {}
    for line in open(path):
        m = re.match(r'graphgate_state_store_duration_seconds_count\{op="([a-z_]+)"\} ([0-9.e+]+)', line)
        if m:
            counts[m.group(1)] = float(m.group(2))
    return counts


def store_ops(before, after, answered):
    """State store operations per answered request during the run, by op (None: not scraped)."""
    if not before or not after:
        return None
    b, a = op_counts(before), op_counts(after)
    return {op: (a[op] - b.get(op, 0)) / answered for op in sorted(a) if a[op] - b.get(op, 0) > 0}


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def mib(kib):
    return kib / 1024


def brief(path):
    r = json.load(open(path))
    lat = r["latency_us"]
    print(f"p50 {fmt_us(lat['p50'])}, p99 {fmt_us(lat['p99'])}, {r['achieved_rps']:,.0f} requests/s, "
          f"{r['cpu_per_1000']:.3f} CPU s per 1,000, RSS {mib(r['rss_kib']):.1f} MiB, "
          f"{r['ok']:,} ok of {r['released']:,} released, {r['not_ok']} not ok, {r['errors']} errors")


def bad(r):
    return r["not_ok"] or r["errors"] or r["unfinished"] or r["gave_up"]


def pick(rounds):
    """The median round by p99 (a shared VM drifts between rounds)."""
    ordered = sorted(rounds, key=lambda r: r["latency_us"]["p99"])
    return ordered[(len(ordered) - 1) // 2]


def git_commit(repo):
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, check=True).stdout.strip()
        return head + (" with uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def section(rate_dir):
    runs = {}
    for path in sorted(glob.glob(os.path.join(rate_dir, "*.json"))):
        if os.path.basename(path) == "run.json":
            continue
        r = json.load(open(path))
        runs.setdefault(r["row"], []).append(r)
    meta = json.load(open(os.path.join(rate_dir, "run.json")))
    names = [n for n in ORDER if n in runs] + sorted(n for n in runs if n not in ORDER)
    chosen = {n: pick(runs[n]) for n in names}
    any_row = next(iter(chosen.values()))
    rounds = max(len(v) for v in runs.values())
    lines = [
        BEGIN,
        "## Constant rate: the production path's latency and CPU (issue 26)",
        "",
        f"Run {meta['started']} at commit {meta['commit']} on {meta['cores']} cores (`SCENARIOS=rate bench/run.sh`"
        + (f"; measured binary: `{meta['graphgate']}`" if meta.get("graphgate") else "") + "): "
        f"{any_row['rate']:,.0f} requests/s released at a constant rate over {any_row['connections']} keep-alive "
        f"connections, {any_row['duration_s']:g} s per row after {meta['warmup']} s of warm-up, latency measured from "
        f"each request's release to the end of its answer (corrected for coordinated omission; "
        f"{'`examples/rate.rs`' if meta.get('loadgen', 'rate') == 'rate' else '`' + (meta.get('loadgen_version') or 'oha') + ' -q --latency-correction`'}), "
        f"{rounds} round{'s' if rounds != 1 else ''}"
        + (" (the median round by p99 shown)" if rounds > 1 else "")
        + f". The proxy pinned to core {meta['proxy_cpu']}; the load generator, the fake Graph (nginx, TLS, 204), the "
        f"emulator and Redis on core {meta['load_cpus']}. Every graphgate row runs the full path with durable audit "
        f"(write-ahead intent fsync'd before Graph is called).",
        "",
        f"**Machine load** (1, 5, 15 min load average; {meta['cores']} cores): {meta['load_start']} at the start, "
        f"{meta['load_end']} at the end"
        + (f". {meta['note'].rstrip('.')}." if meta.get("note") else "."),
        "",
    ]
    anchor = chosen.get("nginx")
    head = "| path | p50 | p99 | p99.9 | achieved rate | CPU s per 1,000 requests | RSS at the end (peak) |"
    rule = "|---|---|---|---|---|---|---|"
    if anchor:
        head += " p99 vs nginx |"
        rule += "---|"
    lines += [head, rule]
    for n in names:
        r = chosen[n]
        lat = r["latency_us"]
        cells = [r["label"], fmt_us(lat["p50"]), fmt_us(lat["p99"]), fmt_us(lat["p999"]),
                 f"{r['achieved_rps']:,.0f}/s", f"{r['cpu_per_1000']:.3f}",
                 f"{mib(r['rss_kib']):.1f} MiB ({mib(r['hwm_kib']):.1f} MiB)"]
        if anchor:
            cells.append("–" if n == "nginx" else f"{lat['p99'] / anchor['latency_us']['p99']:.2f}×")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for n in names:
        r = chosen[n]
        statuses = ", ".join(f"{k}: {v:,}" for k, v in r["statuses"].items())
        note = (f"- {r['label']}: {r['released']:,} released, {r['answered']:,} answered ({statuses}), "
                f"{r['errors']} connection errors; p90 {fmt_us(r['latency_us']['p90'])}, max {fmt_us(r['latency_us']['max'])}; "
                + (f"the ticker woke {fmt_us(r['release_lag_us']['p99'])} late at p99 (not counted, as in oha); "
                   if r.get("release_lag_us") else "")
                + f"load average {r['load_before']} → {r['load_after']}")
        if r.get("store_ops"):
            note += "; state store operations per request: " + ", ".join(
                f"{op} {n:.2f}" for op, n in r["store_ops"].items())
        elif r.get("store_ops") is not None:
            note += "; no state store operation"
        if r["redis_cpu_per_1000"]:
            note += f"; Redis's own CPU {r['redis_cpu_per_1000']:.3f} s per 1,000 requests"
        if len(runs[n]) > 1:
            note += "; rounds' p50/p99: " + ", ".join(
                f"{fmt_us(x['latency_us']['p50'])}/{fmt_us(x['latency_us']['p99'])}" for x in runs[n])
        if r["achieved_rps"] < 0.98 * r["rate"]:
            note += "; **did not keep up with the rate**"
        if bad(r):
            note += f"; **not a valid figure: {r['not_ok']} answers other than 2xx, {r['errors']} errors, " \
                    f"{r['unfinished']} unfinished** (e.g. {'; '.join(r['error_samples'][:2])})"
        lines.append(note + ".")
    goals = goal_lines(chosen)
    if goals:
        lines += [""] + goals
    lines.append(END)
    return lines, any(bad(r) for rs in runs.values() for r in rs)


def verdict(ok):
    return "met" if ok else "**not met**"


def goal_lines(chosen):
    lines = []
    k = chosen.get("redis-keyed")
    if k:
        lat, rss = k["latency_us"], mib(k["rss_kib"])
        lines += [
            "Issue 26's goals, on the Redis path with every store step (the Redis + Idempotency-Key + rate limit + "
            "budget row):",
            "",
            "| goal | result | |",
            "|---|---|---|",
            f"| p50 ≤ 0.5 ms | {fmt_us(lat['p50'])} | {verdict(lat['p50'] <= GOALS['p50'])} |",
            f"| p99 ≤ 2 ms | {fmt_us(lat['p99'])} | {verdict(lat['p99'] <= GOALS['p99'])} |",
            f"| CPU ≤ 0.2 s per 1,000 requests | {k['cpu_per_1000']:.3f} s | {verdict(k['cpu_per_1000'] <= GOALS['cpu'])} |",
            f"| RSS ≤ 30 MiB | {rss:.1f} MiB at the end | {verdict(rss <= GOALS['rss_mib'])} |",
        ]
    m, b = chosen.get("memory"), chosen.get("memory-budget")
    if m and b:
        p99 = b["latency_us"]["p99"] / m["latency_us"]["p99"]
        cpu = b["cpu_per_1000"] / m["cpu_per_1000"] if m["cpu_per_1000"] else float("inf")
        row = (f"| in memory mode, a budget costs no more than none (within 10%, this VM's noise) | p99 {p99:.2f}×, "
               f"CPU {cpu:.2f}× of the row without | {verdict(p99 <= 1.1 and cpu <= 1.1)} |")
        if not lines:
            lines += ["Issue 26's goals:", "", "| goal | result | |", "|---|---|---|"]
        lines.append(row)
    return lines


def render(rate_dir, out_md):
    lines, failed = section(rate_dir)
    text = open(out_md).read() if os.path.exists(out_md) else ""
    block = "\n".join(lines) + "\n"
    pattern = re.compile(re.escape(BEGIN) + r".*?" + re.escape(END) + r"\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text, count=1)
    else:
        text = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block
    open(out_md, "w").write(text)
    print(block)
    if failed:
        print("rate: a row had errors or answers other than 2xx: its figures are not valid", file=sys.stderr)
        sys.exit(1)


def meta(rate_dir, repo, phase):
    """run.json: what the section's heading says about the run (start, then end)."""
    path = os.path.join(rate_dir, "run.json")
    load = " / ".join(open("/proc/loadavg").read().split()[:3])
    if phase == "start":
        m = {"started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
             "commit": git_commit(repo), "cores": os.cpu_count(), "load_start": load,
             "proxy_cpu": os.environ.get("PROXY_CPU", ""), "load_cpus": os.environ.get("LOAD_CPUS", ""),
             "warmup": os.environ.get("RATE_WARMUP", ""), "note": os.environ.get("RATE_NOTE", ""),
             "loadgen": os.environ.get("LOADGEN", "rate"), "loadgen_version": os.environ.get("LOADGEN_VERSION", ""),
             "graphgate": os.environ.get("GRAPHGATE_VERSION", "")}
    else:
        m = json.load(open(path))
        m["load_end"] = load
    json.dump(m, open(path, "w"))


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "row":
        p = argparse.ArgumentParser(prog="rate_report.py row")
        for name in ("round", "cpu-ticks", "ticks-per-sec", "rss-kib", "hwm-kib", "redis-cpu-ticks"):
            p.add_argument("--" + name, type=int, required=True)
        for name in ("row", "label", "load-before", "load-after"):
            p.add_argument("--" + name, required=True)
        p.add_argument("--metrics-before")
        p.add_argument("--metrics-after")
        row(p.parse_args(sys.argv[2:]))
    elif cmd == "from-oha":
        from_oha(*sys.argv[2:5])
    elif cmd == "brief":
        brief(sys.argv[2])
    elif cmd == "render":
        render(sys.argv[2], sys.argv[3])
    elif cmd == "meta":
        meta(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
