#!/usr/bin/env python3
"""Start-up time and idle memory of graphgate.

  startup.py launch ADMIN_HOST:PORT RUNS CPU LOG_DIR -- COMMAND...
      RUNS times: execs COMMAND (graphgate serve; '{run}' in an argument is replaced by the
      run number, e.g. for a fresh audit log), polls GET /readyz on the admin listener every
      2 ms (a new connection each time), and records the time from just before exec to the
      first accepted connection (admin listener up) and to the first 200 (ready: policy
      loaded, audit writable, token obtained; a /readyz asked before the first token waits
      for it). Then reads graphgate's VmRSS, idle with no
      connections, stops it (SIGTERM) and waits for it to exit. Prints one JSON object.

  startup.py idle-rss PID PORT [ADMIN_PORT]
      Waits until no established (or CLOSE_WAIT) TCP connection has local port PORT (the load generator's
      connections are closed) and, with ADMIN_PORT, until graphgate has gone quiet and returned its
      allocator's free memory (graphgate_memory_trims_total rises; at most 30 s), then prints PID's VmRSS
      and VmHWM in KiB and the seconds waited for the trim, tab-separated.
"""
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

POLL_SECS = 0.002
READY_TIMEOUT_SECS = 30


def rss_kib(pid):
    fields = dict(line.split(":", 1) for line in open(f"/proc/{pid}/status"))
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def readyz_status(host, port, connected):
    """Status of one GET /readyz, or None if the listener is not accepting yet (or closed
    the connection without an answer). Calls connected() once the connection is accepted."""
    try:
        s = socket.create_connection((host, port), timeout=10)
    except (ConnectionRefusedError, ConnectionResetError):
        return None
    connected()
    with s:
        s.sendall(f"GET /readyz HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                return None
            data += chunk
        while s.recv(65536):  # read to the end, so the connection is gone when we return
            pass
    return int(data.split(b" ", 2)[1])


def one_start(host, port, cpu, command, log_dir, run):
    argv = [a.replace("{run}", str(run)) for a in command]
    out = open(os.path.join(log_dir, f"startup-{run}.out"), "wb")
    err = open(os.path.join(log_dir, f"startup-{run}.err"), "wb")
    affinity = (lambda: os.sched_setaffinity(0, {cpu})) if cpu >= 0 else None
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=out, stderr=err, preexec_fn=affinity)
    listening = []
    ready = None
    try:
        while True:
            status = readyz_status(host, port, lambda: listening or listening.append(time.monotonic() - t0))
            now = time.monotonic()
            if status == 200:
                ready = now - t0
                break
            if proc.poll() is not None:
                raise RuntimeError(f"graphgate exited with {proc.returncode} before it was ready "
                                   f"(see {err.name})")
            if now - t0 > READY_TIMEOUT_SECS:
                raise RuntimeError(f"graphgate not ready after {READY_TIMEOUT_SECS} s (last /readyz: {status})")
            time.sleep(POLL_SECS)
        rss, _ = rss_kib(proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=35)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
        err.close()
    return {"listening_ms": listening[0] * 1000, "ready_ms": ready * 1000, "idle_rss_kib": rss,
            "exit_code": proc.returncode}


def launch(args):
    sep = args.index("--")
    admin, runs, cpu, log_dir = args[:sep]
    command = args[sep + 1:]
    host, port = admin.rsplit(":", 1)
    samples = [one_start(host, int(port), int(cpu), command, log_dir, i) for i in range(int(runs))]
    ready = [s["ready_ms"] for s in samples]
    rss = [s["idle_rss_kib"] for s in samples]
    summary = {
        "runs": samples,
        "ready_ms_median": statistics.median(ready),
        "ready_ms_min": min(ready),
        "ready_ms_max": max(ready),
        "listening_ms_median": statistics.median(s["listening_ms"] for s in samples),
        "idle_rss_kib_median": statistics.median(rss),
        "idle_rss_kib_max": max(rss),
    }
    print(json.dumps(summary))
    print(f"start-up: ready (first 200 from /readyz) after {summary['ready_ms_median']:.1f} ms median "
          f"(min {summary['ready_ms_min']:.1f}, max {summary['ready_ms_max']:.1f}, {len(samples)} starts; "
          f"admin listener accepting connections after {summary['listening_ms_median']:.1f} ms); "
          f"idle RSS {summary['idle_rss_kib_median'] / 1024:.1f} MiB", file=sys.stderr)


def established_on(port):
    """TCP connections graphgate still holds on local port PORT (IPv4 and IPv6): established,
    or closed by the peer but not yet by graphgate (CLOSE_WAIT)."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            local, state = fields[1], fields[3]
            if state in ("01", "08") and int(local.rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def idle_rss(args):
    pid, port = int(args[0]), int(args[1])
    deadline = time.monotonic() + 30
    while established_on(port) and time.monotonic() < deadline:
        time.sleep(POLL_SECS)
    left = established_on(port)
    if left:
        print(f"startup.py idle-rss: {left} connections still open on port {port} after 30 s", file=sys.stderr)
    waited = wait_trimmed("127.0.0.1", int(args[2])) if len(args) > 2 else 0.0
    now, peak = rss_kib(pid)
    print(f"{now}\t{peak}\t{waited:.2f}")


TRIMS = "graphgate_memory_trims_total"
TRIM_WAIT_SECS = 30


def metric(host, admin_port, name):
    with urllib.request.urlopen(f"http://{host}:{admin_port}/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return 0.0


def wait_trimmed(host, admin_port):
    """Seconds until graphgate trims its allocator once more (it does once it has been quiet for 2 s);
    bounded: a warning past TRIM_WAIT_SECS."""
    start = time.monotonic()
    before = metric(host, admin_port, TRIMS)
    while metric(host, admin_port, TRIMS) <= before:
        if time.monotonic() - start > TRIM_WAIT_SECS:
            print(f"startup.py: no allocator trim within {TRIM_WAIT_SECS} s", file=sys.stderr)
            break
        time.sleep(0.05)
    return time.monotonic() - start


if __name__ == "__main__":
    try:
        {"launch": launch, "idle-rss": idle_rss}[sys.argv[1]](sys.argv[2:])
    except (OSError, RuntimeError, ValueError) as e:
        print(f"startup.py: {e}", file=sys.stderr)
        sys.exit(2)
