#!/usr/bin/env python3
"""Opens N keep-alive connections to graphgate, sends one allowed request on each, keeps them
all open and idle, and prints graphgate's resident memory (VmRSS and VmHWM, KiB) with them open.
Connections open 500 at a time; their requests run at most 128 at once (below graphgate's
default in-flight bound per caller, 256, so every one is answered 204 rather than 429).

usage: idle.py HOST PORT N PID PATH API_KEY BODY_FILE
"""
import asyncio
import sys


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
    host, port, n, pid, path, key, body_file = sys.argv[1:8]
    body = open(body_file, "rb").read()
    request = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    opened = []
    in_flight = asyncio.Semaphore(128)
    for start in range(0, int(n), 500):
        await asyncio.gather(*(one(host, int(port), request, opened, in_flight) for _ in range(start, min(start + 500, int(n)))))
    ok = sum(1 for *_, status in opened if b" 204 " in status)
    now, peak = rss(int(pid))
    print(f"{n}\t{ok}\t{now}\t{peak}")
    for _, writer, _ in opened:
        writer.close()


asyncio.run(main())
