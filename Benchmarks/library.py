#!/usr/bin/env python3
"""The server's image library against wimlib-imagex, side by side in one run.

imprint-server (release build) runs with a fresh data folder (SQLite) and a content folder
holding generated WIMs; its admin API is driven with urllib, each job timed from the request
until a poll of the job (every 50 ms) sees it end. wimlib-imagex does the same work on the same
files, alternating who goes first; medians of --runs, ratio imprint/wimlib (below 1.0: the
server is faster).

  import   POST /api/v1/admin/library/wims: the server reads the whole WIM, checks every blob's
           SHA-1 and takes the file's SHA-256. Peer: `wimlib-imagex verify` + `sha256sum`
           (--peer-hash openssl: `openssl dgst -sha256`, which uses the CPU's SHA instructions as
           the server's libcrypto does; Debian's coreutils sha256sum does not).
           Measured on the full-size WIM and on one a quarter of its size, to show the server's
           memory does not grow with the file.
  extract  POST /api/v1/admin/library/images (image 2 of the WIM): a new single-image WIM,
           data copied as compressed. Peer: `wimlib-imagex export SRC 2 NEW`.
  service  POST .../images/Bench/versions/1/service with a generated driver set (~200 MiB):
           the server copies the version and appends the drivers to the copy (a new version;
           the old one is kept). The peer must keep the old file too, so it is `cp` of the same
           version file + `wimlib-imagex update COPY 1` with `add DRIVERSET /Drivers`.

Both sides use every core (wimlib-imagex --threads=CPUs where it takes the option; `verify`
does not). Sources are read from the page cache: each side's input is read just before that
side runs (on this VM the page cache lets go of files left unread for a while, so warming once
per run made whoever went second read from disk), and each side's output is checked and removed
before the other side starts; `sync` runs before every timed side, untimed.

The server's extract and service jobs also do what the peer commands do not: they fsync the
new file, then read it back whole for its SHA-256 (the one sequences are given) before recording
the version. So a second table gives the like-for-like peer: the same command, then an fsync of
its output and its SHA-256. The server's own phases (from its job
log's timestamps, 250 ms grain) are printed per run.

Each run line also says how many cores other processes kept busy meanwhile (from /proc/stat,
less the measured side's own CPU): on a shared machine a disturbed run shows.

Peak memory: wimlib-imagex's (and cp's, sha256sum's) from wait4's rusage, the largest of a
run's commands. The server is long-running (its VmHWM cannot be reset): its VmRSS is sampled
every 10 ms during the job and the peak above the idle VmRSS just before the request is shown.

Generated data stays in Benchmarks/work/library (reused when present): the source WIM, LZX,
three images (1: unique data, a tenth of --size-gib; 2: --size-gib GiB of unique files, a mix of
text-like, code-like and incompressible data in log-uniformly sized files and a few large ones;
3: image 2 with 1% of its files changed and 2% new data, appended so it shares the rest), the
quarter-size WIM made the same way, and the driver set (packages of an .inf text file, .sys/.dll
code-like and .cat random payloads). What the server makes under content/library is removed at
the end. Results are printed and written to Benchmarks/work/library/results-SIZE.json.

    Benchmarks/library.py [--size-gib 4] [--runs 3] [--drivers-mib 200] [--peer-hash sha256sum|openssl] [--no-build] [--keep]
    Benchmarks/library.py --size-gib 0.5 --runs 1        # a quick run
"""
import argparse
import datetime
import json
import math
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ADMIN = "bench-admin-token"
CPUS = os.cpu_count() or 1
MiB = 1 << 20
GiB = 1 << 30
# How the peer takes a file's SHA-256 (--peer-hash): coreutils' sha256sum as the issue asks, or
# OpenSSL's, which uses the CPU's SHA instructions as the server's libcrypto does.
HASHERS = {"sha256sum": ["sha256sum"], "openssl": ["openssl", "dgst", "-sha256"]}
HASHER = HASHERS["sha256sum"]


def say(message):
    print(message, file=sys.stderr, flush=True)


# MARK: - Running and measuring commands

def run_child(cmd, stdin=None, log=None):
    """Runs a command to its end: wall seconds, peak RSS in MiB and CPU seconds (wait4's rusage)."""
    err = open(log or os.devnull, "wb")
    inp = open(stdin, "rb") if stdin else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        process = subprocess.Popen(cmd, stdin=inp, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        err.close()
        if stdin:
            inp.close()
    if process.returncode != 0:
        detail = open(log, errors="replace").read()[-2000:] if log else ""
        raise SystemExit(f"{' '.join(cmd)} failed ({process.returncode}): {detail}")
    return elapsed, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def run_steps(steps, log):
    """Commands one after the other: total wall seconds, the largest peak RSS, total CPU seconds,
    and each command's (name, seconds)."""
    total, peak, cpu, each = 0.0, 0.0, 0.0, []
    for cmd, stdin in steps:
        elapsed, rss, used = run_child(cmd, stdin=stdin, log=log)
        total, peak, cpu = total + elapsed, max(peak, rss), cpu + used
        each.append((f"wimlib-imagex {cmd[1]}" if cmd[0] == "wimlib-imagex" else os.path.basename(cmd[0]), elapsed))
    return total, peak, cpu, each


def fsync_file(path):
    start = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - start


def warm(path):
    """Reads a file (or a tree) so that the timed runs find it in the page cache."""
    # (Not `tar cf /dev/null`: GNU tar does not read the files when it writes to /dev/null.)
    if os.path.isdir(path):
        subprocess.run(["find", path, "-type", "f", "-exec", "cat", "{}", "+"], stdout=subprocess.DEVNULL)
    else:
        subprocess.run(["cat", path], stdout=subprocess.DEVNULL)


def settle():
    """Dirty pages of the previous run written out, so they do not land on the next one."""
    subprocess.run(["sync"])


def proc_status(pid):
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                values[name] = int(rest.split()[0]) / 1024
    return values


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RSSSampler(threading.Thread):
    """Samples a process's VmRSS (and RssAnon) every `interval` seconds until stopped."""

    def __init__(self, pid, interval=0.01):
        super().__init__(daemon=True)
        self.pid, self.interval = pid, interval
        self.stopping = threading.Event()
        self.peak_rss = self.peak_anon = 0.0
        self.samples = 0

    def run(self):
        while not self.stopping.is_set():
            try:
                status = proc_status(self.pid)
            except OSError:
                return
            self.peak_rss = max(self.peak_rss, status.get("VmRSS", 0))
            self.peak_anon = max(self.peak_anon, status.get("RssAnon", 0))
            self.samples += 1
            time.sleep(self.interval)

    def stop(self):
        self.stopping.set()
        self.join()


# MARK: - Generated data

EXTENSIONS = {"text": ["inf", "xml", "ini", "txt", "mof", "man"], "code": ["dll", "exe", "sys", "mui"],
              "random": ["cab", "png", "jpg", "ttf"]}
FOLDERS = {"text": "Windows/INF", "code": "Windows/System32", "random": "Windows/WinSxS"}


class Generator:
    """Files of three kinds: text-like (compresses about 4:1), code-like (bytes skewed toward
    zero and a few values, about 2:1) and incompressible (already compressed media and cabs)."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.pool = self.text_pool(32 * MiB)
        # A byte translation that skews random bytes: 45% zero, 15% 0xff, 40% over 64 values.
        table = bytearray(256)
        for value in range(256):
            if value < 115:
                table[value] = 0
            elif value < 154:
                table[value] = 0xFF
            else:
                table[value] = (value * 37) % 64 + 1
        self.skew = bytes(table)
        self.counter = 0

    def text_pool(self, size):
        syllables = ["win", "dow", "sys", "drv", "net", "reg", "key", "val", "dat", "con", "fig", "ser", "vice", "mgr",
                     "pnp", "dev", "usb", "pci", "hid", "ka", "ro", "mi", "te", "su", "lo", "na", "pe", "ti", "ex", "in"]
        words = ["".join(self.rng.choices(syllables, k=self.rng.randint(1, 4))) for _ in range(3000)]
        lines, length = [], 0
        while length < size:
            kind = self.rng.random()
            if kind < 0.4:
                line = " ".join(self.rng.choices(words, k=self.rng.randint(3, 14)))
            elif kind < 0.7:
                line = f'{self.rng.choice(words)}.{self.rng.choice(words)} = "{self.rng.choice(words)}",0x{self.rng.getrandbits(32):08x}'
            else:
                line = (f'<{self.rng.choice(words)} name="{self.rng.choice(words)}" '
                        f'version="{self.rng.randint(1, 20)}.{self.rng.randint(0, 9999)}" />')
            lines.append(line)
            length += len(line) + 2
        return "\r\n".join(lines).encode()

    def data(self, kind, size):
        """`size` bytes of one kind, in pieces of at most 8 MiB, unique to this file."""
        self.counter += 1
        head = f"; file {self.counter} {self.rng.getrandbits(64):016x}\r\n".encode()
        yield head[:size]
        left = size - len(head[:size])
        while left > 0:
            n = min(left, 8 * MiB)
            if kind == "random":
                yield os.urandom(n)
            elif kind == "code":
                yield os.urandom(n).translate(self.skew)
            else:
                offset = self.rng.randrange(len(self.pool))
                piece = self.pool[offset:offset + n]
                while len(piece) < n:
                    piece += self.pool[:n - len(piece)]
                yield piece
            left -= n

    def write(self, path, kind, size):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            for piece in self.data(kind, size):
                f.write(piece)

    def tree(self, root, total, prefix=""):
        """Files totalling about `total` bytes under `root`; their paths, relative."""
        large_max = max(8 * MiB, min(128 * MiB, total // 20))
        written, number, files = 0, 0, []
        while written < total:
            if self.rng.random() < 0.01 and large_max > 8 * MiB:
                size = self.rng.randint(8 * MiB, large_max)
                kind = self.rng.choice(["code", "random"])
            else:
                size = int(math.exp(self.rng.uniform(math.log(200), math.log(2 * MiB))))
                kind = self.rng.choices(["text", "code", "random"], weights=[30, 35, 35])[0]
            size = min(size, total - written) or 1
            relative = f"{FOLDERS[kind]}/{prefix}{number // 50:04d}/f{number:06d}.{self.rng.choice(EXTENSIONS[kind])}"
            self.write(os.path.join(root, relative), kind, size)
            files.append(relative)
            written += size
            number += 1
        return files

    def drivers(self, root, total):
        """A driver set: package folders, each an .inf text file with .sys, .dll and .cat payloads."""
        number, written = 0, 0
        while written < total:
            package = os.path.join(root, f"pkg{number:03d}")
            name = f"bench{number:03d}"
            inf = ("[Version]\r\nSignature=\"$WINDOWS NT$\"\r\nClass=System\r\n"
                   "ClassGuid={4d36e97d-e325-11ce-bfc1-08002be10318}\r\n"
                   f"Provider=%Bench%\r\nCatalogFile={name}.cat\r\nDriverVer=01/01/2025,1.0.{number}.0\r\n\r\n"
                   f"[Manufacturer]\r\n%Bench%=Bench,NTamd64\r\n\r\n[Bench.NTamd64]\r\n"
                   f"%{name}.Desc%={name}_Install,PCI\\VEN_1AF4&DEV_{0x1000 + number:04X}\r\n\r\n"
                   f"[{name}_Install]\r\nCopyFiles={name}_Files\r\n\r\n[{name}_Files]\r\n{name}.sys\r\n{name}.dll\r\n").encode()
            os.makedirs(package, exist_ok=True)
            with open(os.path.join(package, f"{name}.inf"), "wb") as f:
                f.write(inf)
                for piece in self.data("text", self.rng.randint(4 << 10, 40 << 10)):
                    f.write(piece)
            sizes = {"sys": self.rng.randint(256 << 10, 3 * MiB), "dll": self.rng.randint(64 << 10, 1 * MiB),
                     "cat": self.rng.randint(8 << 10, 64 << 10)}
            self.write(os.path.join(package, f"{name}.sys"), "code", sizes["sys"])
            self.write(os.path.join(package, f"{name}.dll"), "code", sizes["dll"])
            self.write(os.path.join(package, f"{name}.cat"), "random", sizes["cat"])
            written += sum(sizes.values()) + len(inf)
            number += 1
        return number


def size_tag(gib):
    return f"{gib:g}".replace(".", "_") + "g"


def make_source_wim(path, gib, scratch, seed):
    """The source WIM: three images (see the module's docstring), LZX, made once with wimlib-imagex."""
    if os.path.exists(path):
        return
    total = int(gib * GiB)
    say(f"generating the {gib:g} GiB source WIM (once; kept as {os.path.relpath(path, ROOT)})...")
    started = time.perf_counter()
    generator = Generator(seed)
    shutil.rmtree(scratch, ignore_errors=True)
    base, big = os.path.join(scratch, "base"), os.path.join(scratch, "big")
    temporary = path + ".tmp"
    if os.path.exists(temporary):
        os.unlink(temporary)
    threads = f"--threads={CPUS}"
    os.makedirs(os.path.dirname(path), exist_ok=True)
    log = os.path.join(os.path.dirname(scratch), "generate.log")
    generator.tree(base, total // 10)
    run_child(["wimlib-imagex", "capture", base, temporary, "Base", "--compress=LZX", threads], log=log)
    shutil.rmtree(base)
    files = generator.tree(big, total)
    run_child(["wimlib-imagex", "append", big, temporary, "Bench Big", threads], log=log)
    # Image 3: image 2 updated (1% of its files rewritten, 0.5% deleted, 2% new data).
    rng = random.Random(seed + 1)
    for relative in rng.sample(files, max(1, len(files) // 100)):
        kind = next(k for k, folder in FOLDERS.items() if relative.startswith(folder))
        generator.write(os.path.join(big, relative), kind, os.path.getsize(os.path.join(big, relative)))
    for relative in rng.sample(files, max(1, len(files) // 200)):
        if os.path.exists(os.path.join(big, relative)):
            os.unlink(os.path.join(big, relative))
    generator.tree(big, total // 50, prefix="u")
    run_child(["wimlib-imagex", "append", big, temporary, "Bench Big Updated", threads], log=log)
    shutil.rmtree(scratch)
    os.rename(temporary, path)
    say(f"  {os.path.getsize(path) / GiB:.2f} GiB file in {time.perf_counter() - started:.0f} s")


def make_drivers(folder, mib, seed):
    # Beside the set, not in it: `add SET /Drivers` would take it into the image.
    stamp = os.path.join(os.path.dirname(folder), "." + os.path.basename(folder) + ".complete")
    if os.path.exists(stamp) and open(stamp).read().strip() == str(mib):
        return
    say(f"generating a {mib} MiB driver set (once; kept in {os.path.relpath(folder, ROOT)})...")
    shutil.rmtree(folder, ignore_errors=True)
    packages = Generator(seed).drivers(folder, mib * MiB)
    with open(stamp, "w") as f:
        f.write(str(mib))
    say(f"  {packages} packages")


def tree_bytes(folder):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(folder) for f in fs if not f.startswith("."))


# MARK: - The server

def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, binary, work, content):
        self.data = os.path.join(work, "data")
        shutil.rmtree(self.data, ignore_errors=True)
        boot = os.path.join(work, "boot")
        os.makedirs(boot, exist_ok=True)
        port = free_port()
        self.log = os.path.join(work, "server.log")
        self.process = subprocess.Popen(
            [binary, "--bind", f"127.0.0.1:{port}", "--public-url", f"http://127.0.0.1:{port}", "--data", self.data,
             "--content", content, "--boot", boot, "--admin-token", ADMIN],
            stdout=subprocess.PIPE, stderr=open(self.log, "wb"))
        line = self.process.stdout.readline().decode()
        match = re.search(r":(\d+)\s*$", line)
        if not match:
            raise SystemExit(f"imprint-server did not start: {line!r}; see {self.log}")
        self.base = f"http://127.0.0.1:{match.group(1)}"
        self.pid = self.process.pid

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {ADMIN}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request) as answer:
                text = answer.read()
        except urllib.error.HTTPError as error:
            raise SystemExit(f"{method} {path}: {error.code} {error.read().decode(errors='replace')}")
        return json.loads(text) if text[:1] in (b"{", b"[") else text.decode()

    def job(self, method, path, body):
        """Queues a job and waits for its end: (job, wall seconds, peak VmRSS above idle in MiB,
        peak RssAnon above idle, server CPU seconds)."""
        idle = proc_status(self.pid)
        cpu = cpu_seconds(self.pid)
        sampler = RSSSampler(self.pid)
        sampler.start()
        start = time.perf_counter()
        job = self.call(method, path, body)
        while job["state"] in ("queued", "running"):
            time.sleep(0.05)
            job = self.call("GET", f"/api/v1/admin/library/jobs/{job['id']}")
        elapsed = time.perf_counter() - start
        sampler.stop()
        cpu = cpu_seconds(self.pid) - cpu
        if job["state"] != "succeeded":
            raise SystemExit(f"library job {job['kind']} failed: {job.get('message')}\n  log: " + "\n  ".join(job["log"]))
        return job, elapsed, max(0.0, sampler.peak_rss - idle["VmRSS"]), max(0.0, sampler.peak_anon - idle["RssAnon"]), cpu, idle

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def phases(job):
    """The job's passes and their seconds, from its log's timestamps ("copying the image's data 3.1")."""
    entries = []
    for line in job["log"]:
        stamp, _, text = line.partition(" ")
        try:
            when = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        except ValueError:
            continue
        entries.append((when, text))
    result, started = [], None
    for (when, text), following in zip(entries, entries[1:] + [None]):
        if text == "started":
            started = when
            continue
        if started is None or following is None:
            continue
        seconds = (following[0] - when).total_seconds()
        if text in ("copying the image's data", "checking every blob", "SHA-256 of the file", "copying the version",
                    "changing the image"):
            result.append((text, seconds))
    return result


# MARK: - The benchmark

class Row:
    def __init__(self, name, note=""):
        self.name, self.note = name, note
        self.imprint, self.wimlib, self.check = [], [], []
        self.imprint_peak, self.imprint_anon, self.wimlib_peak, self.check_peak = 0.0, 0.0, 0.0, 0.0
        self.runs = []

    def add(self, imprint, wimlib, check=None):
        self.imprint.append(imprint["seconds"])
        self.wimlib.append(wimlib["seconds"])
        self.imprint_peak = max(self.imprint_peak, imprint["peak_mib"])
        self.imprint_anon = max(self.imprint_anon, imprint["peak_anon_mib"])
        self.wimlib_peak = max(self.wimlib_peak, wimlib["peak_mib"])
        if check is not None:
            self.check.append(check["seconds"])
            self.check_peak = max(self.check_peak, check["peak_mib"])
        self.runs.append({"imprint": imprint, "wimlib": wimlib, "wimlib_output_check": check})

    def medians(self):
        a, b = statistics.median(self.imprint), statistics.median(self.wimlib)
        return a, b, a / b

    def like_for_like(self):
        if not self.check:
            return None
        a = statistics.median(self.imprint)
        b = statistics.median([w + c for w, c in zip(self.wimlib, self.check)])
        return a, b, a / b

    def json(self):
        a, b, r = self.medians()
        like = self.like_for_like()
        return {"operation": self.name, "note": self.note, "imprint_s": a, "wimlib_s": b, "ratio": r,
                "imprint_peak_mib_above_idle": self.imprint_peak, "imprint_peak_anon_mib_above_idle": self.imprint_anon,
                "wimlib_peak_mib": self.wimlib_peak,
                "like_for_like": None if like is None else {"imprint_s": like[0], "wimlib_with_check_s": like[1], "ratio": like[2],
                                                             "check_peak_mib": self.check_peak},
                "runs": self.runs}


def imprint_side(server, method, path, body):
    job, elapsed, peak, anon, cpu, idle = server.job(method, path, body)
    return {"seconds": elapsed, "peak_mib": peak, "peak_anon_mib": anon, "cpu_s": cpu, "idle_rss_mib": idle["VmRSS"],
            "hwm_mib": proc_status(server.pid)["VmHWM"], "phases": phases(job), "result": job.get("result")}


def wimlib_side(steps, log):
    elapsed, peak, cpu, each = run_steps(steps, log)
    return {"seconds": elapsed, "peak_mib": peak, "cpu_s": cpu, "steps": each}


def output_check(path, log):
    """What the server's job does after writing, done to the peer's output: fsync, SHA-256."""
    synced = fsync_file(path)
    elapsed, peak, cpu, each = run_steps([(HASHER + [path], None)], log)
    return {"seconds": synced + elapsed, "fsync_s": synced, "peak_mib": peak, "cpu_s": cpu, "steps": each}


def show_run(row, run, imprint, wimlib, check=None):
    line = (f"  {row.name:14} run {run + 1}: imprint {imprint['seconds']:7.2f} s ({imprint['cpu_s']:.1f} CPU s, "
            f"+{imprint['peak_mib']:.0f} MiB)   wimlib {wimlib['seconds']:7.2f} s ({wimlib['cpu_s']:.1f} CPU s, {wimlib['peak_mib']:.0f} MiB)"
            f"   others busy {imprint['others_cores']:.2f} / {wimlib['others_cores']:.2f} cores")
    if check is not None:
        line += f"   peer's output fsync+sha256 {check['seconds']:.2f} s (fsync {check['fsync_s']:.2f})"
    print(line, flush=True)
    if imprint["phases"]:
        print("      server phases: " + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in imprint["phases"]), flush=True)
    steps = wimlib["steps"] + (check["steps"] if check else [])
    if len(steps) > 1:
        print("      peer commands: " + ", ".join(f"{what} {seconds:.1f} s" for what, seconds in steps), flush=True)


def busy_seconds():
    """CPU seconds the whole machine has spent busy (every process), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:9]]
    return (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")


class Side:
    """One contender's part of a run: `prepare` (untimed: warms its input), `measure` (the timed
    work, returning its result) and `after` (untimed: checks or removes its output, gets the
    result and returns what to keep of the check)."""

    def __init__(self, measure, prepare=None, after=None):
        self.measure, self.prepare, self.after = measure, prepare, after


def alternate(run, imprint, wimlib):
    """Both sides of one run; who goes first alternates, so neither always gets the warmer machine.
    Each side's input is warmed just before it (this VM's page cache lets go of files that stay
    unread, so a file warmed before the other side ran may be read from disk again), and each
    side's output is checked and removed before the other side starts.
    Each result gains the CPU the rest of the machine used meanwhile (`others_cores`): on a
    shared machine, a run that others disturbed shows."""
    results, checks = {}, {}
    for who in (["imprint", "wimlib"] if run % 2 == 0 else ["wimlib", "imprint"]):
        side = imprint if who == "imprint" else wimlib
        settle()
        if side.prepare:
            side.prepare()
        busy = busy_seconds()
        result = side.measure()
        busy = busy_seconds() - busy
        result["others_cores"] = max(0.0, (busy - result["cpu_s"]) / result["seconds"])
        results[who] = result
        checks[who] = side.after(result) if side.after else None
    return results["imprint"], results["wimlib"], checks["wimlib"]


def count_drivers(wim, image, log):
    """Package folders under /Drivers in an image of a WIM (wimlib-imagex dir)."""
    listing = subprocess.run(["wimlib-imagex", "dir", wim, str(image), "--path=/Drivers"], capture_output=True, text=True)
    if listing.returncode != 0:
        return None
    return sum(1 for line in listing.stdout.splitlines() if re.fullmatch(r"/Drivers/[^/]+", line.strip()))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-gib", type=float, default=4, help="data in image 2 of the source WIM, GiB (0.5 for a quick run)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--drivers-mib", type=int, default=200, help="size of the generated driver set")
    ap.add_argument("--work", default=os.path.join(HERE, "work", "library"))
    ap.add_argument("--no-build", action="store_true", help="use .build/release/imprint-server as it is")
    ap.add_argument("--binary", help="an imprint-server to run instead of the release build")
    ap.add_argument("--keep", action="store_true", help="keep what the server made (content/library) and its data folder")
    ap.add_argument("--peer-hash", choices=sorted(HASHERS), default="sha256sum",
                    help="the peer's SHA-256: sha256sum (coreutils, as asked) or openssl (SHA instructions, as the server)")
    args = ap.parse_args()
    global HASHER
    HASHER = HASHERS[args.peer_hash]

    if not shutil.which("wimlib-imagex"):
        sys.exit("wimlib-imagex not found: apt-get install wimtools")
    if not args.no_build and not args.binary:
        say("building imprint-server (release)...")
        subprocess.run(["swift", "build", "-c", "release", "--product", "imprint-server"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    binary = args.binary or os.path.join(ROOT, ".build", "release", "imprint-server")

    work = os.path.abspath(args.work)
    content = os.path.join(work, "content")
    peer = os.path.join(work, "peer")
    os.makedirs(os.path.join(content, "wims"), exist_ok=True)
    os.makedirs(peer, exist_ok=True)
    full_gib, quarter_gib = args.size_gib, args.size_gib / 4
    wims = {}
    for gib in (full_gib, quarter_gib):
        relative = f"wims/source-{size_tag(gib)}.wim"
        make_source_wim(os.path.join(content, relative), gib, os.path.join(work, "scratch"), seed=int(gib * 1000) + 1)
        wims[gib] = relative
    drivers_relative = "drivers/set"
    drivers = os.path.join(content, drivers_relative)
    make_drivers(drivers, args.drivers_mib, seed=42)
    driver_bytes = tree_bytes(drivers)
    driver_packages = len([d for d in os.listdir(drivers) if not d.startswith(".")])
    commands = os.path.join(peer, "update-commands.txt")
    with open(commands, "w") as f:
        f.write(f'add "{drivers}" /Drivers\n')
    peer_log = os.path.join(work, "peer.log")

    # What a previous run's server left (its records went with its data folder).
    shutil.rmtree(os.path.join(content, "library"), ignore_errors=True)
    server = Server(binary, work, content)
    rows = []
    threads = f"--threads={CPUS}"
    try:
        idle = proc_status(server.pid)
        say(f"imprint-server pid {server.pid}, idle VmRSS {idle['VmRSS']:.0f} MiB; {CPUS} CPUs; {args.runs} runs each; "
            f"load average {open('/proc/loadavg').read().split()[0]}")

        # Import, at two sizes.
        wim_id = None
        for gib in (full_gib, quarter_gib):
            source = os.path.join(content, wims[gib])
            size = os.path.getsize(source)
            row = Row(f"import {gib:g} GiB", f"{size / GiB:.2f} GiB file; peer: wimlib-imagex verify + {' '.join(HASHER)}")
            for run in range(args.runs):
                keep = gib == full_gib and run == args.runs - 1

                def forget(result):
                    nonlocal wim_id
                    if keep:
                        wim_id = result["result"]
                    else:
                        server.call("DELETE", f"/api/v1/admin/library/wims/{result['result']}")

                imprint, wimlib, _ = alternate(
                    run,
                    Side(lambda: imprint_side(server, "POST", "/api/v1/admin/library/wims", {"file": wims[gib]}),
                         prepare=lambda: warm(source), after=forget),
                    Side(lambda: wimlib_side([(["wimlib-imagex", "verify", source], None), (HASHER + [source], None)], peer_log),
                         prepare=lambda: warm(source)))
                row.add(imprint, wimlib)
                show_run(row, run, imprint, wimlib)
            rows.append(row)

        # Extract image 2.
        source = os.path.join(content, wims[full_gib])
        exported = os.path.join(peer, "export.wim")
        row = Row("extract", "image 2; peer: wimlib-imagex export SRC 2 NEW")
        base_version = None
        sizes = {}

        def drop_extra_version(result):
            nonlocal base_version
            version = int(result["result"].rsplit("/", 1)[1])
            if base_version is None:
                base_version = version
            else:
                server.call("DELETE", f"/api/v1/admin/library/images/Bench/versions/{version}")

        def check_export(result):
            sizes.setdefault("extract", {})["wimlib"] = os.path.getsize(exported)
            check = output_check(exported, peer_log)
            os.unlink(exported)
            return check

        def clear_then_warm(path, source):
            if os.path.exists(path):
                os.unlink(path)
            warm(source)

        for run in range(args.runs):
            imprint, wimlib, check = alternate(
                run,
                Side(lambda: imprint_side(server, "POST", "/api/v1/admin/library/images", {"wim": wim_id, "index": "2", "image": "Bench"}),
                     prepare=lambda: warm(source), after=drop_extra_version),
                Side(lambda: wimlib_side([(["wimlib-imagex", "export", source, "2", exported, threads], None)], peer_log),
                     prepare=lambda: clear_then_warm(exported, source), after=check_export))
            row.add(imprint, wimlib, check)
            show_run(row, run, imprint, wimlib, check)
        rows.append(row)
        detail = server.call("GET", "/api/v1/admin/library/images/Bench")
        version = next(v for v in detail["image"]["versions"] if v["version"] == base_version)
        base_file = os.path.join(content, version["file"])
        sizes["extract"]["imprint"] = version["size"]

        # Service: the driver set into a new version of the extracted image.
        copy = os.path.join(peer, "service-copy.wim")
        row = Row("service", f"{driver_bytes / MiB:.0f} MiB, {driver_packages} driver packages; peer: cp + wimlib-imagex update")
        drivers_found = {}
        sizes["service"] = {}

        def warm_service(output=None):
            if output and os.path.exists(output):
                os.unlink(output)
            warm(base_file)
            warm(drivers)

        def drop_serviced(result):
            version = int(result["result"].rsplit("/", 1)[1])
            if "imprint" not in drivers_found:
                made = next(v for v in server.call("GET", "/api/v1/admin/library/images/Bench")["image"]["versions"]
                            if v["version"] == version)
                sizes["service"]["imprint"] = made["size"]
                drivers_found["imprint"] = count_drivers(os.path.join(content, made["file"]), 1, peer_log)
            server.call("DELETE", f"/api/v1/admin/library/images/Bench/versions/{version}")

        def check_copy(result):
            if "wimlib" not in drivers_found:
                sizes["service"]["wimlib"] = os.path.getsize(copy)
                drivers_found["wimlib"] = count_drivers(copy, 1, peer_log)
            check = output_check(copy, peer_log)
            os.unlink(copy)
            return check

        for run in range(args.runs):
            imprint, wimlib, check = alternate(
                run,
                Side(lambda: imprint_side(server, "POST", f"/api/v1/admin/library/images/Bench/versions/{base_version}/service",
                                          {"drivers": [drivers_relative]}),
                     prepare=warm_service, after=drop_serviced),
                Side(lambda: wimlib_side([(["cp", base_file, copy], None), (["wimlib-imagex", "update", copy, "1", threads], commands)], peer_log),
                     prepare=lambda: warm_service(copy), after=check_copy))
            row.add(imprint, wimlib, check)
            show_run(row, run, imprint, wimlib, check)
        rows.append(row)
        hwm = proc_status(server.pid)["VmHWM"]
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(os.path.join(content, "library"), ignore_errors=True)
            shutil.rmtree(server.data, ignore_errors=True)

    report(args, rows, idle, hwm, sizes, drivers_found, driver_packages, wims, content, work)


def report(args, rows, idle, hwm, sizes, drivers_found, driver_packages, wims, content, work):
    print()
    print(f"source WIM {args.size_gib:g} GiB of data in image 2 ({os.path.getsize(os.path.join(content, wims[args.size_gib])) / GiB:.2f} GiB file, LZX, "
          f"3 images); {args.runs} runs each, medians; {CPUS} CPUs; server idle VmRSS {idle['VmRSS']:.0f} MiB, VmHWM at the end {hwm:.0f} MiB")
    print("The server keeps the old version when it services one: the peer copies it too (cp + wimlib-imagex update).")
    print()
    print("| operation | imprint-server (s) | wimlib-imagex (s) | ratio imprint/wimlib | imprint peak MiB (VmRSS above idle) | wimlib peak MiB | peer |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        a, b, r = row.medians()
        print(f"| {row.name} | {a:.2f} | {b:.2f} | {r:.2f} | {row.imprint_peak:.0f} | {row.wimlib_peak:.0f} | {row.note} |")
    print()
    print("Like for like: the server's extract and service jobs also fsync the new file and read it back for its SHA-256;")
    print(f"here the peer's time adds an fsync and `{' '.join(HASHER)}` of its output.")
    print()
    print(f"| operation | imprint-server (s) | wimlib-imagex + fsync + {HASHER[0]} (s) | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        like = row.like_for_like()
        if like:
            print(f"| {row.name} | {like[0]:.2f} | {like[1]:.2f} | {like[2]:.2f} |")
    print()
    for name, pair in sizes.items():
        print(f"{name}: output {pair['imprint'] / MiB:.1f} MiB (imprint) / {pair['wimlib'] / MiB:.1f} MiB (wimlib)")
    print(f"driver packages under /Drivers: imprint {drivers_found.get('imprint')}, wimlib {drivers_found.get('wimlib')} (of {driver_packages})")
    for row in rows:
        others = max(max(r["imprint"]["others_cores"], r["wimlib"]["others_cores"]) for r in row.runs)
        if others > 0.25:
            print(f"{row.name}: other processes used up to {others:.2f} cores during its timed runs (a shared machine: see the runs)")
    imports = [row for row in rows if row.name.startswith("import")]
    if len(imports) == 2:
        print(f"import peak memory above idle: {imports[0].imprint_peak:.0f} MiB ({imports[0].name}) vs "
              f"{imports[1].imprint_peak:.0f} MiB ({imports[1].name})")
    results = {"size_gib": args.size_gib, "runs": args.runs, "cpus": CPUS, "peer_hash": " ".join(HASHER), "idle_rss_mib": idle["VmRSS"], "final_hwm_mib": hwm,
               "sizes": sizes, "drivers_found": drivers_found, "driver_packages": driver_packages,
               "rows": [row.json() for row in rows]}
    path = os.path.join(work, f"results-{size_tag(args.size_gib)}{'' if args.peer_hash == 'sha256sum' else '-' + args.peer_hash}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(f"results written to {os.path.relpath(path, ROOT)}")


if __name__ == "__main__":
    main()
