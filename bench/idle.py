#!/usr/bin/env python3
"""Opens N keep-alive connections to graphgate, sends one allowed request on each, keeps them
all open and idle, waits until graphgate has parked them all (its admin /metrics gauge
graphgate_connections_parked reaches N; graphgate parks a connection after it rested 1 s), and
then until it has gone quiet and returned its allocator's free memory (graphgate_memory_trims_total
rises: it trims 2 s after its last request or park), and prints N, the answers 204, graphgate's
resident memory (VmRSS and VmHWM, KiB) with them open, and the wait for the parks and the trim
(seconds). Connections open 500 at a time; their requests run at
most 128 at once (below graphgate's default in-flight bound per caller, 256, so every one is
answered 204 rather than 429).

usage: idle.py HOST PORT N PID PATH API_KEY BODY_FILE ADMIN_PORT
"""
import asyncio
import sys
import time
import urllib.request

PARKED = "graphgate_connections_parked"
TRIMS = "graphgate_memory_trims_total"
PARK_WAIT_SECS = 60
POLL_SECS = 0.05


def metric(host, admin_port, name):
    with urllib.request.urlopen(f"http://{host}:{admin_port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def wait_parked(host, admin_port, n):
    """Seconds until N connections are parked and graphgate has trimmed its allocator after
    the parks (bounded: a warning and the time waited past PARK_WAIT_SECS)."""
    start = time.monotonic()
    while (got := metric(host, admin_port, PARKED)) < n:
        if time.monotonic() - start > PARK_WAIT_SECS:
            print(f"idle.py: {got:.0f} of {n} connections parked after {PARK_WAIT_SECS} s", file=sys.stderr)
            break
        time.sleep(POLL_SECS)
    trims = metric(host, admin_port, TRIMS)
    while metric(host, admin_port, TRIMS) <= trims:
        if time.monotonic() - start > PARK_WAIT_SECS:
            print(f"idle.py: no allocator trim after the parks within {PARK_WAIT_SECS} s", file=sys.stderr)
            break
        time.sleep(POLL_SECS)
    return time.monotonic() - start


async def one(host, port, request, opened, in_flight):
    reader, writer = await asyncio.open_connection(host, port)
    async with in_flight:
        writer.write(request)
        await writer.drain()
        status = await reader.readline()
        while (await reader.readline()) not in (b"\r\n", b""):
            pass
    opened.append((reader, writer, status))


def rss(pid):
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def main():
    host, port, n, pid, path, key, body_file, admin_port = sys.argv[1:9]
    body = open(body_file, "rb").read()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    opened = []
    in_flight = asyncio.Semaphore(128)
    for start in range(0, int(n), 500):
        await asyncio.gather(*(one(host, int(port), request, opened, in_flight) for _ in range(start, min(start + 500, int(n)))))
    ok = sum(1 for *_, status in opened if b" 204 " in status)
    waited = await asyncio.to_thread(wait_parked, host, admin_port, int(n))
    now, peak = rss(int(pid))
    print(f"{n}\t{ok}\t{now}\t{peak}\t{waited:.2f}")
    for _, writer, _ in opened:
        writer.close()


asyncio.run(main())
