#!/usr/bin/env python3
"""Load on imprint-server (release build, SQLite in a temporary folder), in one run.

events: creates one deployment per agent through the real API (admin token, a sequence, a
default rule, one check-in per machine), then plays the agents: each sends its events
(sequenceStarted, step starts and ends, progress, logs, a final result) in order, in batches
of 1-5 as a live agent does, over --connections keep-alive HTTP/1.1 connections shared by all
agents (an agent's next batch is sent once its previous one is answered). Prints events/s,
request latency p50/p99, the CPU the server and this client used, and checks that the number
of events stored (in the SQLite file and in /metrics) equals the number sent.

content: serves one --size file (random data, on tmpfs by default) to --readers concurrent
clients each reading --range-size ranges at random offsets, from imprint-server's /content and
from nginx (started here on another loopback port with a minimal configuration, serving the same
file), alternating, and prints MiB/s and the ratio imprint/nginx (above 1.0: imprint is faster).

The load client is asyncio with hand-written HTTP/1.1 on raw sockets: it prints its own CPU time
so the reader can see it was not the bottleneck (on 2 cores the client and the server share them).

    Benchmarks/server.py [--agents 500] [--events 200] [--connections 50] [--only events,content]
"""
import argparse
import asyncio
import json
import os
import random
import re
import resource
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ADMIN = "bench-admin-token"


def ensure_packages(packages):
    """apt-get install what is missing (the benchmark's own needs, not the project's)."""
    missing = [p for p, binary in packages if not shutil.which(binary)]
    if missing:
        print(f"installing {' '.join(missing)}", file=sys.stderr)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], check=True, stdout=subprocess.DEVNULL,
                       env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))


def cpu_seconds(pid):
    """User + system CPU seconds of a process so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port():
    """A TCP port nothing listens on right now (the kernel's choice for port 0)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, binary, work, content=None, extra=(), name="server"):
        self.work = work
        self.content = content or os.path.join(work, "content")
        os.makedirs(self.content, exist_ok=True)
        # The server needs its public URL (it never takes one from a request), so the port is
        # chosen here. Every simulated agent checks in from 127.0.0.1: the per-address limit on
        # new machines (a defence against floods of invented identities) is lifted for the setup.
        port = free_port()
        self.process = subprocess.Popen(
            [binary, "--bind", f"127.0.0.1:{port}", "--public-url", f"http://127.0.0.1:{port}",
             "--data", os.path.join(work, f"{name}-data"), "--content", self.content,
             "--boot", os.path.join(work, "boot"), "--admin-token", ADMIN, "--unknown-machines", "default",
             "--new-machines-per-minute", "0", *extra],
            stdout=subprocess.PIPE, stderr=open(os.path.join(work, f"{name}.log"), "wb"))
        line = self.process.stdout.readline().decode()
        match = re.search(r":(\d+)\s*$", line)
        if not match:
            raise SystemExit(f"imprint-server did not start: {line!r}")
        self.port = int(match.group(1))
        self.base = f"http://127.0.0.1:{self.port}"
        self.database = os.path.join(work, f"{name}-data", "imprint.db")

    def call(self, method, path, body=None, token=ADMIN):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request) as answer:
            text = answer.read()
        return json.loads(text) if text[:1] in (b"{", b"[") else text.decode()

    def stop(self):
        self.process.terminate()
        self.process.wait()


# MARK: - Raw HTTP/1.1 client

class Connection:
    def __init__(self, host, port):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def request(self, head, body=b""):
        """Sends one request, reads one response; (status, body)."""
        if self.writer is None:
            await self.open()
        self.writer.write(head + body)
        status_line = await self.reader.readline()
        status = int(status_line.split()[1])
        length, chunked = 0, False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding" and b"chunked" in value.lower():
                chunked = True
        if chunked:
            parts = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                parts.append(await self.reader.readexactly(size))
                await self.reader.readline()
            return status, b"".join(parts)
        return status, await self.reader.readexactly(length)

    def close(self):
        if self.writer is not None:
            self.writer.close()


# MARK: - Events

def agent_events(count, rng):
    """What one agent reports: a sequence of `count` events as the engine numbers them."""
    events = [{"kind": "sequenceStarted", "message": "Deploy Windows"}]
    step = 0
    while len(events) < count - 1:
        step += 1
        events.append({"kind": "stepStarted", "step": str(step), "name": f"Step {step}", "type": "applyImage"})
        for percent in range(10, 100, 10):
            if len(events) >= count - 2:
                break
            if rng.random() < 0.2:
                events.append({"kind": "log", "level": "info", "message": f"step {step}: {percent}% of the image written"})
            else:
                events.append({"kind": "progress", "step": str(step), "percent": float(percent),
                               "bytes": percent << 24, "total": 100 << 24, "rate": 1.5e8})
        events.append({"kind": "stepEnded", "step": str(step), "name": f"Step {step}", "status": "success", "duration": 12.5})
    events = events[:count - 1]
    events.append({"kind": "result", "status": "success", "duration": 600.0, "message": "done"})
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    for number, event in enumerate(events, 1):
        event["sequence"] = number
        event["time"] = f"{stamp}.{number % 1000:03d}Z"
    return events


def make_batches(events, rng, low, high):
    batches, index = [], 0
    while index < len(events):
        size = rng.randint(low, high)
        batches.append(events[index:index + size])
        index += size
    return batches


def percentile(sorted_values, fraction):
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


async def play_agents(port, agents, connections):
    """Every agent's batches in order, interleaved across `connections` keep-alive connections."""
    queue = asyncio.Queue()
    for agent in agents:
        queue.put_nowait(agent)
    latencies, failures = [], []
    sent = 0

    async def worker():
        nonlocal sent
        connection = Connection("127.0.0.1", port)
        while True:
            try:
                agent = queue.get_nowait()
            except asyncio.QueueEmpty:
                break
            batch = agent["batches"][agent["next"]]
            body = json.dumps({"events": batch}).encode()
            head = (f"POST /api/v1/deployments/{agent['id']}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    f"Authorization: Bearer {agent['token']}\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n").encode()
            start = time.perf_counter()
            status, answer = await connection.request(head, body)
            latencies.append(time.perf_counter() - start)
            if status != 200:
                failures.append((status, answer[:200]))
            else:
                sent += len(batch)
            agent["next"] += 1
            if agent["next"] < len(agent["batches"]):
                queue.put_nowait(agent)
        connection.close()

    await asyncio.gather(*(worker() for _ in range(connections)))
    return latencies, failures, sent


def events_benchmark(binary, args):
    rng = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="imprint-server-bench-") as work:
        server = Server(binary, work)
        try:
            server.call("PUT", "/api/v1/admin/sequences/bench",
                        {"name": "Bench", "steps": [{"type": "setVariable", "name": "Mark", "variable": "Done", "value": "yes"}]})
            server.call("PUT", "/api/v1/admin/rules",
                        {"rules": [{"name": "default", "match": "any", "pattern": "*", "sequence": "bench", "variables": {}}]})
            agents = []
            setup = time.perf_counter()
            for number in range(args.agents):
                mac = "52:54:%02x:%02x:%02x:%02x" % (number >> 24 & 255, number >> 16 & 255, number >> 8 & 255, number & 255)
                answer = server.call("POST", "/api/v1/agents/checkin", {"facts": {
                    "macAddresses": [mac], "firmware": "uefi", "memoryMiB": 8192, "cpuCount": 4, "architecture": "amd64",
                    "disks": [], "serialNumber": f"BENCH{number:06d}"}}, token=None)
                deployment = answer["deployment"]
                events = agent_events(args.events, rng)
                agents.append({"id": deployment["id"], "token": deployment["token"], "next": 0,
                               "batches": make_batches(events, rng, args.batch_min, args.batch_max)})
            setup = time.perf_counter() - setup
            total = args.agents * args.events
            requests = sum(len(a["batches"]) for a in agents)
            print(f"{args.agents} deployments created through the API in {setup:.1f} s; "
                  f"{total} events in {requests} requests (batches of {args.batch_min}-{args.batch_max}), "
                  f"{args.connections} connections")

            server_cpu = cpu_seconds(server.process.pid)
            client_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
            start = time.perf_counter()
            latencies, failures, sent = asyncio.run(play_agents(server.port, agents, args.connections))
            elapsed = time.perf_counter() - start
            server_cpu = cpu_seconds(server.process.pid) - server_cpu
            client_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - client_cpu

            latencies.sort()
            stored_db = sqlite3.connect(f"file:{server.database}?mode=ro", uri=True).execute("SELECT count(*) FROM events").fetchone()[0]
            metrics = server.call("GET", "/metrics")
            stored_metric = int(re.search(r"^imprint_events_ingested_total (\d+)", metrics, re.M).group(1))
            # The list is paged: its total for the state is the count.
            succeeded = server.call("GET", "/api/v1/admin/deployments?state=succeeded&limit=1").get("total", 0)
            result = {
                "events_per_s": sent / elapsed, "requests_per_s": len(latencies) / elapsed, "seconds": elapsed,
                "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
                "max_ms": latencies[-1] * 1000, "server_cpu": server_cpu / elapsed, "client_cpu": client_cpu / elapsed,
                "sent": sent, "stored_db": stored_db, "stored_metric": stored_metric, "failures": len(failures),
            }
            print(f"{sent} events in {elapsed:.2f} s: {result['events_per_s']:.0f} events/s, {result['requests_per_s']:.0f} requests/s; "
                  f"latency p50 {result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms, max {result['max_ms']:.1f} ms")
            print(f"CPU: server {result['server_cpu']:.2f} cores, this client {result['client_cpu']:.2f} cores (of {os.cpu_count()})")
            print(f"stored: {stored_db} rows in SQLite, {stored_metric} in /metrics, of {total} sent; "
                  f"{succeeded} deployments succeeded (of {args.agents}); {len(failures)} failed requests"
                  + (f", first: {failures[0]}" if failures else ""))
            ok = stored_db == total and stored_metric == total and not failures
            print("nothing lost" if ok else "MISMATCH: events lost or refused")
            return result, ok
        finally:
            server.stop()


# MARK: - Content

NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 100000;
    client_body_temp_path {work}/body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;
    server {{
        listen 127.0.0.1:{port};
        location /content/ {{ alias {content}/; }}
    }}
    # The production setup: nginx in front of imprint-server, which checks each /content
    # request and answers X-Accel-Redirect; nginx then sends the file from its internal location.
    server {{
        listen 127.0.0.1:{front_port};
        location / {{ proxy_pass http://keepalive_imprint; proxy_http_version 1.1; proxy_set_header Connection ""; }}
        location /protected-content/ {{ internal; alias {content}/; }}
    }}
    upstream keepalive_imprint {{ server 127.0.0.1:{accel_port}; keepalive 32; }}
}}
"""


def read_ranges(port, path, size, readers, range_size, seconds, seed):
    """`readers` threads, each on its own keep-alive connection reading random ranges for
    `seconds` into one reused buffer (recv_into releases the GIL: the client stays cheap);
    bytes read and the time taken."""
    deadline = time.perf_counter() + seconds
    totals = [0] * readers
    errors = []

    def reader(number):
        rng = random.Random(seed * 1000 + number)
        buffer = bytearray(1 << 20)
        view = memoryview(buffer)
        try:
            with socket.create_connection(("127.0.0.1", port)) as sock:
                while time.perf_counter() < deadline:
                    start = rng.randrange(0, size - range_size)
                    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: bytes={start}-{start + range_size - 1}\r\n\r\n".encode())
                    head = b""
                    while b"\r\n\r\n" not in head:
                        chunk = sock.recv(4096)
                        if not chunk:
                            raise RuntimeError("connection closed in the headers")
                        head += chunk
                    head, _, rest = head.partition(b"\r\n\r\n")
                    status = int(head.split(None, 2)[1])
                    length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
                    if status != 206:
                        raise RuntimeError(f"GET {path} Range: answered {status}")
                    remaining = length - len(rest)
                    while remaining > 0:
                        got = sock.recv_into(view, min(remaining, len(buffer)))
                        if got == 0:
                            raise RuntimeError("connection closed mid-body")
                        remaining -= got
                    totals[number] += length
        except Exception as error:  # noqa: BLE001 - reported after the run
            errors.append(error)

    began = time.perf_counter()
    threads = [threading.Thread(target=reader, args=(n,)) for n in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(totals), time.perf_counter() - began


def content_benchmark(binary, args):
    ensure_packages([("nginx", "nginx")])
    with tempfile.TemporaryDirectory(prefix="imprint-content-bench-", dir=args.tmp) as work:
        server = Server(binary, work)
        accel = None
        nginx = None
        try:
            file = os.path.join(server.content, "image.wim")
            with open(file, "wb") as f:
                if not args.sparse:
                    block = os.urandom(16 << 20)
                    for _ in range(args.size // len(block)):
                        f.write(block)
                f.truncate(args.size)
            # nginx's workers drop to an unprivileged user: let them read the file.
            for path in (work, server.content):
                os.chmod(path, 0o755)
            os.chmod(file, 0o644)
            nginx_port, front_port = free_port(), free_port()
            accel = Server(binary, work, content=server.content, extra=["--content-accel-redirect", "/protected-content/"], name="accel")
            conf = os.path.join(work, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(work=work, port=nginx_port, front_port=front_port, accel_port=accel.port,
                                          content=server.content, workers=args.nginx_workers))
            nginx = subprocess.Popen(["nginx", "-c", conf, "-e", os.path.join(work, "nginx-error.log")],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(100):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{nginx_port}/content/image.wim", timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            print(f"{args.size >> 20} MiB file, {args.readers} readers, ranges of {args.range_size >> 10} KiB, "
                  f"{args.seconds} s per run, {args.runs} runs each, nginx with {args.nginx_workers} worker(s)")
            rates = {"imprint": [], "nginx": [], "nginx+imprint": []}
            for run in range(args.runs):
                for name, port in (("imprint", server.port), ("nginx", nginx_port), ("nginx+imprint", front_port)):
                    process = {"imprint": server.process.pid, "nginx+imprint": accel.process.pid}.get(name)
                    server_cpu = cpu_seconds(process) if process else 0
                    client_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
                    total, elapsed = read_ranges(port, "/content/image.wim", args.size, args.readers,
                                                 args.range_size, args.seconds, run)
                    client_cpu = sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - client_cpu
                    rates[name].append(total / elapsed / (1 << 20))
                    extra = f", server {(cpu_seconds(process) - server_cpu) / elapsed:.2f} cores" if process else ""
                    print(f"  run {run + 1} {name}: {rates[name][-1]:.0f} MiB/s (client {client_cpu / elapsed:.2f} cores{extra})")
            imprint, nginx_rate = statistics.median(rates["imprint"]), statistics.median(rates["nginx"])
            front = statistics.median(rates["nginx+imprint"])
            print(f"median: imprint {imprint:.0f} MiB/s, nginx {nginx_rate:.0f} MiB/s, ratio imprint/nginx {imprint / nginx_rate:.2f}; "
                  f"nginx in front of imprint (X-Accel-Redirect) {front:.0f} MiB/s, ratio {front / nginx_rate:.2f}")
            return {"imprint": imprint, "nginx": nginx_rate, "nginx+imprint": front}
        finally:
            if nginx is not None:
                nginx.terminate()
                nginx.wait()
            if accel is not None:
                accel.stop()
            server.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--agents", type=int, default=500)
    ap.add_argument("--events", type=int, default=200, help="events per agent")
    ap.add_argument("--batch-min", type=int, default=1)
    ap.add_argument("--batch-max", type=int, default=5)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--only", default="events,content")
    ap.add_argument("--size", type=int, default=1 << 30, help="content file size in bytes")
    ap.add_argument("--sparse", action="store_true", help="a sparse file instead of random data")
    ap.add_argument("--readers", type=int, default=20)
    ap.add_argument("--range-size", type=int, default=4 << 20)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--nginx-workers", default="auto")
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="where the content file goes (default tmpfs: the disk is not what is measured)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--binary", help="an imprint-server to run instead of building the release one")
    args = ap.parse_args()
    only = set(args.only.split(","))

    if not args.no_build and not args.binary:
        subprocess.run(["swift", "build", "-c", "release", "--product", "imprint-server"], cwd=ROOT, check=True,
                       stdout=subprocess.DEVNULL)
    binary = args.binary or os.path.join(ROOT, ".build", "release", "imprint-server")
    ok = True
    if "events" in only:
        _, ok = events_benchmark(binary, args)
    if "content" in only:
        content_benchmark(binary, args)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
