#!/usr/bin/env python3
"""Cold start: against a freshly started graphgate (empty token cache), opens N keep-alive
connections first, then releases one allowed request on each at once and measures each
request's latency (request written -> whole answer read). Counts the Entra token requests
graphgate made since it was launched and during the burst, from the emulator's count and
from graphgate's own graphgate_token_fetches_total. The goal is exactly one (single-flight).

  coldstart.py prepare EMULATOR_HOST:PORT EMULATOR_CA TOKEN_DELAY_MS
      Before graphgate is launched: prints the emulator's token-request count (the baseline
      for 'burst'). With TOKEN_DELAY_MS > 0, also makes the emulator's next token answer
      that much slower (a one-shot 'slow' fault), so the first token fetch -- graphgate
      primes its token at start-up -- is still in flight when the burst arrives.
  coldstart.py burst HOST PORT N PATH API_KEY BODY_FILE EMULATOR_HOST:PORT EMULATOR_CA ADMIN_HOST:PORT BASELINE GRAPH_PORT
      The measurement (BASELINE from 'prepare'; GRAPH_PORT to count the connections graphgate
      holds open to the fake Graph after the burst). Prints one JSON object on stdout and a summary line on stderr; exit
      status 0 whether or not the goal is met (run.sh decides).

Exit status 2 if a measurement itself could not be made.
"""
import asyncio
import http.client
import json
import re
import ssl
import sys
import time


def emulator(addr, ca_file, method, path, body=None):
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cafile=ca_file))
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
        resp = conn.getresponse()
        answer = resp.read()
        if resp.status != 200:
            raise RuntimeError(f"emulator {method} {path} answered {resp.status}: {answer[:200]!r}")
        return json.loads(answer)
    finally:
        conn.close()


def emulator_token_count(addr, ca_file):
    return int(emulator(addr, ca_file, "GET", "/_emulator/token-requests")["count"])


def prepare(addr, ca_file, delay_ms):
    print(emulator_token_count(addr, ca_file))
    faults = {"token": [{"kind": "slow", "delay_ms": int(delay_ms), "times": 1}]} if int(delay_ms) > 0 else {}
    emulator(addr, ca_file, "PUT", "/_emulator/faults", json.dumps(faults))


def metric_token_fetches(addr):
    """Sum of graphgate_token_fetches_total over its result labels, and the per-label values.
    Reading /metrics does not touch the token broker (/readyz would)."""
    host, port = addr.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    by_result = {m.group(1): int(float(m.group(2))) for m in
                 re.finditer(r'^graphgate_token_fetches_total\{result="([^"]*)"\}\s+(\S+)', text, re.M)}
    return sum(by_result.values()), by_result


async def read_answer(reader):
    """Reads one HTTP/1.1 answer; returns the status code."""
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed before an answer")
    status = int(status_line.split()[1])
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length:
        await reader.readexactly(length)
    return status


async def one(conn, request, go):
    reader, writer = conn
    await go.wait()
    start = time.monotonic()
    writer.write(request)
    try:
        await writer.drain()
        status = await read_answer(reader)
    except (ConnectionError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
        return None, f"{type(e).__name__}"
    return time.monotonic() - start, status


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * p // 100))
    return sorted_values[int(rank) - 1]


def established_to(port):
    """Established TCP connections to remote port PORT on this host (IPv4 and IPv6)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        n += sum(1 for row in rows if row.split()[3] == "01" and int(row.split()[2].rsplit(":", 1)[1], 16) == port)
    return n


async def burst(host, port, n, path, key, body_file, emulator_addr, emulator_ca, admin, baseline, graph_port):
    port, n, baseline, graph_port = int(port), int(n), int(baseline), int(graph_port)
    body = open(body_file, "rb").read()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    # Open every connection first (in batches, so the listen backlog is not the subject).
    connect_start = time.monotonic()
    conns = []
    for start in range(0, n, 250):
        conns += await asyncio.gather(*(asyncio.open_connection(host, port)
                                        for _ in range(start, min(start + 250, n))))
    connect_secs = time.monotonic() - connect_start

    go = asyncio.Event()
    tasks = [asyncio.ensure_future(one(c, request, go)) for c in conns]
    await asyncio.sleep(0)  # let every task reach go.wait()
    # These two readings and the two after the burst bracket the burst alone.
    metric_before, _ = metric_token_fetches(admin)
    before = emulator_token_count(emulator_addr, emulator_ca)
    burst_start = time.monotonic()
    go.set()
    results = await asyncio.gather(*tasks)
    burst_secs = time.monotonic() - burst_start

    upstream = established_to(graph_port)
    after = emulator_token_count(emulator_addr, emulator_ca)
    metric_after, metric_by_result = metric_token_fetches(admin)
    for _, writer in conns:
        writer.close()

    latencies = sorted(lat for lat, _ in results if lat is not None)
    statuses = {}
    for lat, status in results:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    out = {
        "connections": n,
        "answered_204": statuses.get("204", 0),
        "statuses": statuses,
        "p50_us": percentile(latencies, 50) * 1e6,
        "p99_us": percentile(latencies, 99) * 1e6,
        "max_us": latencies[-1] * 1e6 if latencies else float("nan"),
        "upstream_connections": upstream,
        "connect_secs": connect_secs,
        "burst_secs": burst_secs,
        # graphgate is fresh: its counter covers everything since launch.
        "token_requests_emulator": after - baseline,
        "token_fetches_metric": metric_after,
        "token_fetches_metric_by_result": metric_by_result,
        "token_requests_before_burst": before - baseline,
        "token_fetches_metric_before_burst": metric_before,
        "token_requests_during_burst": after - before,
    }
    print(json.dumps(out))
    print(f"cold start: {n} concurrent requests, {out['answered_204']} answered 204 "
          f"(all statuses {statuses}); p50 {out['p50_us'] / 1000:.2f} ms, p99 {out['p99_us'] / 1000:.2f} ms, "
          f"max {out['max_us'] / 1000:.2f} ms; token requests since launch: "
          f"{out['token_requests_emulator']} (emulator; {out['token_requests_before_burst']} before the burst, "
          f"{out['token_requests_during_burst']} during it), {out['token_fetches_metric']} (graphgate metric); "
          f"{upstream} connections open to the fake Graph afterwards",
          file=sys.stderr)


if __name__ == "__main__":
    try:
        if sys.argv[1] == "prepare":
            prepare(*sys.argv[2:5])
        else:
            asyncio.run(burst(*sys.argv[2:13]))
    except (OSError, RuntimeError, KeyError, ValueError, TypeError) as e:
        print(f"coldstart.py: {e}", file=sys.stderr)
        sys.exit(2)
