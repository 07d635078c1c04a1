#!/usr/bin/env python3
"""Parses wrk output into rows and renders the benchmark table (Markdown) and chart (SVG).

  report.py parse NAME CONNS CPU_TICKS TICKS_PER_SEC PEAK_RSS_KIB < wrk-output   -> one TSV row
  report.py render RESULTS.tsv OUT.md OUT.svg AUDIT_RECORDS
"""
import datetime
import os
import re
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
    rows = {}
    for line in open(path):
        name, conns, rps, p50, p99, cpu, total, rss, errors, sock = line.rstrip("\n").split("\t")
        rows[(name, int(conns))] = dict(rps=float(rps), p50=float(p50), p99=float(p99), cpu=float(cpu),
                                        total=int(total), rss=int(rss), errors=int(errors), sock=sock)
    return rows


def fmt_us(us):
    return f"{us / 1000:.2f} ms" if us >= 1000 else f"{us:.0f} µs"


def render(results, out_md, out_svg, audit_records):
    r = load(results)
    g1, g64, n1, n64 = r[("graphgate", 1)], r[("graphgate", 64)], r[("nginx", 1)], r[("nginx", 64)]
    direct = r[("direct", 1)]
    noaudit = r.get(("graphgate-noaudit", 64))
    cpu10k = lambda row: row["cpu"] / row["total"] * 10_000
    lines = [
        f"Run {datetime.date.today().isoformat()} on {os.cpu_count()} cores "
        f"(`bench/run.sh`, wrk {os.environ.get('DURATION', '10')} s per run; the proxy under test pinned to one core, "
        "wrk, the fake Graph and the emulator on the other).",
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
    if noaudit:
        lines.append(f"- Durable audit (write-ahead intent + outcome, fsync'd, group commit): "
                     f"{g64['rps']:,.0f} requests/s with it, {noaudit['rps']:,.0f} without "
                     f"({g64['rps'] / noaudit['rps']:.2f}×); {audit_records} audit records written and verified.")
    idle = os.path.join(os.path.dirname(results), "idle.tsv")
    if os.path.exists(idle):
        for line in open(idle):
            n, ok, now, peak = line.split()
            lines.append(f"- {int(n):,} idle keep-alive connections (each after one request, {int(ok):,} answered 204): "
                         f"graphgate RSS {int(now) / 1024:.1f} MiB (peak {int(peak) / 1024:.1f} MiB).")
    bad = {k: v for k, v in r.items() if v["errors"] or v["sock"]}
    lines.append("- Non-2xx answers or socket errors: " + (", ".join(f"{k[0]} c{k[1]}: {v['errors']} {v['sock']}" for k, v in bad.items()) if bad else "none."))
    open(out_md, "w").write("\n".join(lines) + "\n")
    svg(out_svg, [("p50, 1 conn", g1["p50"], n1["p50"]), ("p99, 1 conn", g1["p99"], n1["p99"]),
                  ("p50, 64 conns", g64["p50"], n64["p50"]), ("p99, 64 conns", g64["p99"], n64["p99"])])


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


if __name__ == "__main__":
    if sys.argv[1] == "parse":
        parse(*sys.argv[2:7])
    else:
        render(*sys.argv[2:6])
