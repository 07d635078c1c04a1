#!/usr/bin/env python3
"""Parses wrk output into rows and renders the benchmark table (Markdown) and chart (SVG).

  report.py parse NAME CONNS CPU_TICKS TICKS_PER_SEC PEAK_RSS_KIB < wrk-output   -> one TSV row
  report.py render RESULTS.tsv OUT.md OUT.svg AUDIT_RECORDS
  report.py docs RESULTS.md DOCS.md     -> the summary between DOCS.md's bench markers

render also reads, from RESULTS.tsv's directory when present: idle.tsv, idle-after-load.tsv,
coldstart-{primed,inflight}.json (bench/coldstart.py), startup.json (bench/startup.py) and policy.tsv; the
state-memory / state-redis rows make the state store section. Without
the main comparison rows (a partial run), it writes only the sections it has, and no chart.
The rate scenario's section of OUT.md (bench/rate_report.py) is kept as it was.
"""
import datetime
import json
import os
import re
import subprocess
import sys

UNITS = {"us": 1.0, "ms": 1000.0, "s": 1_000_000.0}


def micros(text):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    return float(m.group(1)) * UNITS[m.group(2)]


def parse(name, conns, cpu_ticks, ticks_per_sec, rss_kib):
    out = sys.stdin.read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    pct = {p: micros(v) for p, v in re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M)}
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = int(errors.group(1)) if errors else 0
    socket_errors = re.search(r"Socket errors: (.*)", out)
    cpu = int(cpu_ticks) / int(ticks_per_sec)
    print("\t".join(map(str, [name, conns, rps, pct["50"], pct["99"], cpu, total, rss_kib, errors,
                              socket_errors.group(1) if socket_errors else ""])))


def load(path):
    """Rows by (name, connections). A key measured in several rounds gets its median round
    (by requests/s, so one round's figures stay together), with every round's requests/s in
    `rounds`; errors are summed over the rounds."""
    runs = {}
    for line in open(path):
        name, conns, rps, p50, p99, cpu, total, rss, errors, sock = line.rstrip("\n").split("\t")
        runs.setdefault((name, int(conns)), []).append(
            dict(rps=float(rps), p50=float(p50), p99=float(p99), cpu=float(cpu), total=int(total),
                 rss=int(rss), errors=int(errors), sock=sock))
    rows = {}
    for key, rounds in runs.items():
        ordered = sorted(rounds, key=lambda row: row["rps"])
        row = dict(ordered[(len(ordered) - 1) // 2])
        row["rounds"] = [x["rps"] for x in rounds]
        row["errors"] = sum(x["errors"] for x in rounds)
        row["sock"] = " ".join(x["sock"] for x in rounds if x["sock"])
        rows[key] = row
    return rows


def spread(row):
    """' (rounds: 9,100 / 9,480 / 9,900 requests/s)' when there was more than one round."""
    if len(row.get("rounds", [])) < 2:
        return ""
    return " (rounds: " + " / ".join(f"{x:,.0f}" for x in row["rounds"]) + " requests/s)"


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def render(results, out_md, out_svg, audit_records):
    r = load(results)
    here = os.path.dirname(results)
    if ("graphgate", 64) in r:
        lines = main_section(r, here, out_svg, audit_records)
    else:
        lines = [f"Run {datetime.date.today().isoformat()} on {os.cpu_count()} cores "
                 f"(`bench/run.sh` with SCENARIOS={os.environ.get('SCENARIOS', '')}, "
                 f"wrk {os.environ.get('DURATION', '10')} s per run)."]
        bad = {k: v for k, v in r.items() if v["errors"] or v["sock"]}
        idle = idle_lines(here)
        if idle or r:
            lines.append("")
        lines += idle
        if r:
            lines.append("- Non-2xx answers or socket errors: " + (", ".join(f"{k[0]} c{k[1]}: {v['errors']} {v['sock']}" for k, v in bad.items()) if bad else "none."))
    extra = new_scenarios(r, here)
    if extra:
        lines += [""] + extra
    lines += rate_section(out_md)
    open(out_md, "w").write("\n".join(lines) + "\n")


def rate_section(out_md):
    """The rate scenario's section of the file being replaced (bench/rate_report.py writes
    it), kept as it is: a run without that scenario does not erase its figures."""
    if not os.path.exists(out_md):
        return []
    m = re.search(r"<!-- rate:begin -->.*?<!-- rate:end -->", open(out_md).read(), re.S)
    return ["", m.group(0)] if m else []


def mib(kib):
    return f"{int(kib) / 1024:.1f} MiB"


def new_scenarios(r, here):
    """The cold start, start-up and policy-size sections, for whichever of them ran."""
    lines = []
    for variant, what in (("primed", "the first token fetched at start-up, before the burst"),
                          ("inflight", "the emulator holding that first token answer back, so the burst meets an "
                                       "empty cache with the fetch in flight")):
        path = os.path.join(here, f"coldstart-{variant}.json")
        if not os.path.exists(path):
            continue
        c = json.load(open(path))
        met = c["token_requests_emulator"] == 1 and c["token_fetches_metric"] == 1
        others = {k: v for k, v in c["statuses"].items() if k != "204"}
        n = c["token_requests_emulator"]
        caveat = ""
        if variant == "inflight" and c["token_fetches_metric_before_burst"]:
            caveat = " (but the token had already arrived before the burst: raise COLD_TOKEN_DELAY_MS)"
        lines.append(
            f"- Cold start, {what}{caveat}: fresh graphgate, {c['connections']:,} connections opened first, then one "
            f"request on each released together; {c['answered_204']:,} answered 204"
            + (f" (others: {', '.join(f'{k}: {v}' for k, v in others.items())})" if others else "")
            + f"; latency p50 {fmt_us(c['p50_us'])}, p99 {fmt_us(c['p99_us'])}, max {fmt_us(c['max_us'])}; "
            f"**{n} token request{'s' if n != 1 else ''}** to Entra since launch ({c['token_requests_during_burst']} "
            f"during the burst; graphgate_token_fetches_total {c['token_fetches_metric']}), goal exactly 1: "
            f"{'met' if met else '**not met**'}; {c['upstream_connections']:,} connections to the fake Graph open afterwards.")
    path = os.path.join(here, "startup.json")
    if os.path.exists(path):
        s = json.load(open(path))
        lines.append(
            f"- Start-up: exec of `graphgate serve` to the first 200 from `/readyz` (policy loaded, audit writable, "
            f"first token fetched; polled every 2 ms): **{s['ready_ms_median']:.0f} ms** (median of {len(s['runs'])} starts, "
            f"{s['ready_ms_min']:.0f}–{s['ready_ms_max']:.0f} ms; the admin listener accepted connections after "
            f"{s['listening_ms_median']:.0f} ms). Idle RSS right after start-up, no connections: "
            f"**{mib(s['idle_rss_kib_median'])}** (goal under 20 MiB: {'met' if s['idle_rss_kib_max'] < 20 * 1024 else '**not met**'}).")
    path = os.path.join(here, "idle-after-load.tsv")
    if os.path.exists(path):
        now, peak, *waited = open(path).read().split()
        trimmed = f", read once it had gone quiet and trimmed its allocator ({float(waited[0]):.1f} s after the last connection closed)" if waited else ""
        lines.append(f"- Idle again after the load runs above, wrk's connections closed{trimmed}: graphgate RSS **{mib(now)}** "
                     f"(peak during the runs {mib(peak)}; goal under 20 MiB: {'met' if int(now) < 20 * 1024 else '**not met**'}).")
    lines += state_lines(r)
    path = os.path.join(here, "policy.tsv")
    if os.path.exists(path):
        rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
        base = None
        table = ["| policy rules (callers) | requests/s, 64 connections | vs smallest | p99 latency | "
                 "`policy check` time | RSS idle before → after load |", "|---|---|---|---|---|---|"]
        reloads = []
        for label, n, walk, check_ms, before, after, reloaded in rows:
            if int(reloaded):
                reloads.append(f"{label}: {reloaded}")
            w = r.get((f"policy-{label}", 64))
            if not w:
                continue
            base = base or w["rps"]
            what = f"{int(n):,} ({int(n):,})" + (", every rule naming the bench caller" if walk == "walk" else "")
            table.append(f"| {what} | {w['rps']:,.0f} | {w['rps'] / base:.2f}× | {fmt_us(w['p99'])} | {int(check_ms):,} ms | "
                         f"{mib(before)} → {mib(after)} |")
        lines += ["", "Requests/s as the policy grows (graphgate, durable audit; N−1 filler callers each with its own "
                  "API key and rule, the bench caller's allowing rule last; rules are indexed by caller, so only "
                  "the “every rule naming the bench caller” row makes the decision check all of them):", ""] + table
        if reloads:
            lines += ["", "- **Policy reloads during these runs** (the file did not change; each recompiles the policy): "
                      + ", ".join(reloads) + "."]
    return lines


def state_lines(r):
    """The state store section: memory against Redis, the latency Redis adds."""
    if ("state-redis", 1) not in r or ("state-memory", 1) not in r:
        return []
    table = ["| connections | memory p50 / p99 | Redis p50 / p99 | added by Redis, p50 / p99 | requests/s memory → Redis |",
             "|---|---|---|---|---|"]
    for c in (1, 64):
        m, rd = r.get(("state-memory", c)), r.get(("state-redis", c))
        if not m or not rd:
            continue
        table.append(f"| {c} | {fmt_us(m['p50'])} / {fmt_us(m['p99'])} | {fmt_us(rd['p50'])} / {fmt_us(rd['p99'])} | "
                     f"**{fmt_us(rd['p50'] - m['p50'])}** / {fmt_us(rd['p99'] - m['p99'])} | {m['rps']:,.0f} → {rd['rps']:,.0f} |")
    return ["", "State store (`--state memory` against `--state redis://`, a local redis-server; every request with its "
            "own Idempotency-Key under a caller rate limit: one Redis round trip before Graph and one after; durable audit on):",
            ""] + table


def goals_64(g64, n64, here):
    """Issue 26's goals at 64 connections and for idle memory, each met or not."""
    verdict = lambda ok: "met" if ok else "**not met**"
    rows = [f"| requests/s ≥ 0.7× nginx | {g64['rps'] / n64['rps']:.2f}× | {verdict(g64['rps'] >= 0.7 * n64['rps'])} |",
            f"| p99 ≤ 1.5× nginx | {g64['p99'] / n64['p99']:.2f}× | {verdict(g64['p99'] <= 1.5 * n64['p99'])} |"]
    path = os.path.join(here, "idle-after-load.tsv")
    if os.path.exists(path):
        now = int(open(path).read().split()[0])
        rows.append(f"| idle RSS after the load ≤ 20 MiB | {mib(now)} | {verdict(now <= 20 * 1024)} |")
    path = os.path.join(here, "idle.tsv")
    if os.path.exists(path):
        for line in open(path):
            n, _ok, now, *_ = line.split()
            if int(n) == 10_000:
                rows.append(f"| 10,000 idle keep-alive connections ≤ 64 MiB | {mib(now)} | {verdict(int(now) <= 64 * 1024)} |")
    return ["", "Issue 26's goals at 64 connections and for idle memory:", "",
            "| goal | result | |", "|---|---|---|"] + rows


def idle_lines(here):
    lines = []
    idle = os.path.join(here, "idle.tsv")
    if os.path.exists(idle):
        for line in open(idle):
            n, ok, now, peak, *waited = line.split()
            parked = f", read once all were parked and graphgate had trimmed its allocator ({float(waited[0]):.1f} s after the last answer)" if waited else ""
            lines.append(f"- {int(n):,} idle keep-alive connections (each after one request, {int(ok):,} answered 204): "
                         f"graphgate RSS {int(now) / 1024:.1f} MiB (peak {int(peak) / 1024:.1f} MiB){parked}.")
    return lines


def commit():
    """' at commit abc1234' (with '+changes' when the work tree differs), or '' outside git."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        head = subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", repo, "diff", "--quiet", "HEAD", "--", "src", "Cargo.toml",
                                "Cargo.lock"]).returncode != 0
    except (OSError, subprocess.CalledProcessError):
        return ""
    return f" at commit {head}" + ("+changes" if dirty else "")


def main_section(r, here, out_svg, audit_records):
    g1, g64, n1, n64 = r[("graphgate", 1)], r[("graphgate", 64)], r[("nginx", 1)], r[("nginx", 64)]
    direct = r[("direct", 1)]
    noaudit = r.get(("graphgate-noaudit", 64))
    cpu10k = lambda row: row["cpu"] / row["total"] * 10_000
    lines = [
        f"Run {datetime.date.today().isoformat()}{commit()} on {os.cpu_count()} cores "
        f"(`bench/run.sh`, wrk {os.environ.get('DURATION', '10')} s per run; the proxy under test pinned to one core, "
        "wrk, the fake Graph and the emulator on the other"
        + (f"; {len(g64['rounds'])} alternating rounds per comparison, the median round of each shown" if len(g64.get("rounds", [])) > 1 else "")
        + ").",
        "",
        "| | graphgate (full path, durable audit) | nginx anchor | graphgate / nginx |",
        "|---|---|---|---|",
        f"| requests/s, 64 connections | {g64['rps']:,.0f} | {n64['rps']:,.0f} | **{g64['rps'] / n64['rps']:.2f}×** |",
        f"| p50 latency, 1 connection | {fmt_us(g1['p50'])} | {fmt_us(n1['p50'])} | {g1['p50'] / n1['p50']:.2f}× |",
        f"| p99 latency, 1 connection | {fmt_us(g1['p99'])} | {fmt_us(n1['p99'])} | {g1['p99'] / n1['p99']:.2f}× |",
        f"| p50 latency, 64 connections | {fmt_us(g64['p50'])} | {fmt_us(n64['p50'])} | {g64['p50'] / n64['p50']:.2f}× |",
        f"| p99 latency, 64 connections | {fmt_us(g64['p99'])} | {fmt_us(n64['p99'])} | **{g64['p99'] / n64['p99']:.2f}×** |",
        f"| CPU seconds per 10,000 requests (64 conns) | {cpu10k(g64):.3f} | {cpu10k(n64):.3f} | {cpu10k(g64) / cpu10k(n64):.2f}× |",
        f"| peak RSS | {g64['rss'] / 1024:.1f} MiB | {n64['rss'] / 1024:.1f} MiB | {g64['rss'] / n64['rss']:.2f}× |",
        "",
        f"- Added p50 latency at 1 connection over a direct call to the fake Graph "
        f"({fmt_us(direct['p50'])}): graphgate **{fmt_us(g1['p50'] - direct['p50'])}**, nginx {fmt_us(n1['p50'] - direct['p50'])}.",
    ]
    if len(g64.get("rounds", [])) > 1:
        lines.append(f"- Requests/s at 64 connections in each round: graphgate{spread(g64)}, nginx{spread(n64)}.")
    if noaudit:
        lines.append(f"- Durable audit (write-ahead intent + outcome, fsync'd, group commit): "
                     f"{g64['rps']:,.0f} requests/s with it, {noaudit['rps']:,.0f} without "
                     f"({g64['rps'] / noaudit['rps']:.2f}×; {noaudit['rps'] / n64['rps']:.2f}× nginx without audit), "
                     f"CPU per 10,000 requests {cpu10k(g64):.3f} s with it, {cpu10k(noaudit):.3f} s without; "
                     f"{audit_records} audit records written and verified.")
    noaudit1 = r.get(("graphgate-noaudit", 1))
    if noaudit1:
        lines.append(f"- Added p50 latency at 1 connection with audit off: graphgate "
                     f"**{fmt_us(noaudit1['p50'] - direct['p50'])}** (p99 {fmt_us(noaudit1['p99'])}); the difference "
                     f"from the full path is the wait for the intent's fsync.")
    fsync = os.path.join(here, "fsync.tsv")
    if os.path.exists(fsync):
        p50, p99 = (float(x) for x in open(fsync).read().split())
        lines.append(f"- This disk's `fdatasync` after a 1 KiB append (the floor under every durable intent): "
                     f"p50 {fmt_us(p50)}, p99 {fmt_us(p99)}.")
    lines += idle_lines(here)
    bad = {k: v for k, v in r.items() if v["errors"] or v["sock"]}
    lines.append("- Non-2xx answers or socket errors: " + (", ".join(f"{k[0]} c{k[1]}: {v['errors']} {v['sock']}" for k, v in bad.items()) if bad else "none."))
    lines += goals_64(g64, n64, here)
    svg(out_svg, [("p50, 1 conn", g1["p50"], n1["p50"]), ("p99, 1 conn", g1["p99"], n1["p99"]),
                  ("p50, 64 conns", g64["p50"], n64["p50"]), ("p99, 64 conns", g64["p99"], n64["p99"])])
    return lines


def svg(path, groups):
    width, height, left, bottom, top = 640, 300, 60, 40, 30
    top_us = max(max(g, n) for _, g, n in groups) * 1.15
    plot_h = height - bottom - top
    slot = (width - left - 20) / len(groups)
    y = lambda us: top + plot_h - us / top_us * plot_h
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
             f'<text x="{left}" y="18" font-size="14">Latency (lower is better): graphgate vs nginx anchor</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{width - 10}" y2="{top + plot_h}" stroke="#333"/>']
    for i in range(5):
        us = top_us * i / 4
        parts.append(f'<text x="{left - 6}" y="{y(us) + 4}" text-anchor="end">{fmt_us(us)}</text>')
        parts.append(f'<line x1="{left}" y1="{y(us)}" x2="{width - 10}" y2="{y(us)}" stroke="#ddd"/>')
    for i, (label, g, n) in enumerate(groups):
        x = left + i * slot + slot * 0.15
        w = slot * 0.33
        for j, (value, colour) in enumerate([(g, "#2b6cb0"), (n, "#a0aec0")]):
            parts.append(f'<rect x="{x + j * w}" y="{y(value)}" width="{w - 4}" height="{top + plot_h - y(value)}" fill="{colour}"/>')
        parts.append(f'<text x="{x + w}" y="{height - bottom + 16}" text-anchor="middle">{label}</text>')
    parts.append(f'<rect x="{width - 200}" y="8" width="10" height="10" fill="#2b6cb0"/><text x="{width - 185}" y="17">graphgate</text>')
    parts.append(f'<rect x="{width - 110}" y="8" width="10" height="10" fill="#a0aec0"/><text x="{width - 95}" y="17">nginx</text>')
    parts.append("</svg>")
    open(path, "w").write("\n".join(parts) + "\n")


DOCS_BEGIN, DOCS_END = "<!-- bench:begin -->", "<!-- bench:end -->"


def docs(results_md, docs_md):
    """Copies a full run's headline figures from RESULTS.md into DOCS.md (docs/performance.md)
    between its bench markers: the 64-connection comparison, the constant-rate table and the
    idle lines, each with the sentence saying when and how it was run. Nothing is typed by
    hand, so the documentation's table is the last full run's."""
    text = open(results_md).read()
    lines = text.split("\n")
    out = ["<!-- written by bench/run.sh (bench/report.py docs); edit bench/report.py, not this block -->", ""]
    # The main comparison: the first paragraph and the first table.
    table = [i for i, line in enumerate(lines) if line.startswith("|")]
    if not lines[0].startswith("Run ") or not table:
        sys.exit(f"{results_md} has no main comparison: run the full bench/run.sh")
    first = table[0]
    end = first
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    out += [lines[0], ""] + lines[first:end] + [""]
    goals = next((i for i, line in enumerate(lines) if line.startswith("Issue 26's goals at 64")), None)
    if goals is not None:
        stop = goals + 2
        while stop < len(lines) and lines[stop].startswith("|"):
            stop += 1
        out += lines[goals:stop] + [""]
    keep = ("- Idle again after the load", "- 10,000 idle keep-alive", "- 1,000 idle keep-alive",
            "- Durable audit", "- Start-up:")
    out += [line for line in lines if line.startswith(keep)]
    rate = re.search(r"<!-- rate:begin -->(.*?)<!-- rate:end -->", text, re.S)
    if rate:
        body = rate.group(1).strip().split("\n")
        run = next((line for line in body if line.startswith("Run ")), None)
        rows = [line for line in body if line.startswith("|")]
        # the figures table, then the goals table, each a block of consecutive rows
        blocks, current = [], []
        for line in body:
            if line.startswith("|"):
                current.append(line)
            elif current:
                blocks.append(current)
                current = []
        if current:
            blocks.append(current)
        if run and rows:
            out += ["", "At a constant rate (the `rate` scenario): " + run[len("Run "):], ""]
            for block in blocks:
                out += block + [""]
    doc = open(docs_md).read()
    if DOCS_BEGIN not in doc or DOCS_END not in doc:
        sys.exit(f"{docs_md} has no {DOCS_BEGIN} ... {DOCS_END} block")
    head, rest = doc.split(DOCS_BEGIN, 1)
    tail = rest.split(DOCS_END, 1)[1]
    block = "\n".join(out).rstrip("\n")
    open(docs_md, "w").write(head + DOCS_BEGIN + "\n" + block + "\n" + DOCS_END + tail)


if __name__ == "__main__":
    if sys.argv[1] == "parse":
        parse(*sys.argv[2:7])
    elif sys.argv[1] == "docs":
        docs(*sys.argv[2:4])
    else:
        render(*sys.argv[2:6])
