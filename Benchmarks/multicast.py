#!/usr/bin/env python3
"""Multicast against unicast HTTP: 1 machine and 20 machines, side by side in one run (issue 19).

The lab of scripts/netlab (scripts/lib/netlab.py: a bridge in the namespace imc-hub, the sender
in imc-snd behind a link limited with tc to --rate, each receiver in its own namespace imc-rNN)
carries one generated WIM (--size-mib of generated files, captured by wimlib-imagex with
--compress, default none) to receivers that apply it to their own directories:

  multicast  `imprint multicast send` (capped at 90% of the link) and `imprint multicast receive
             --apply DIR --image 1` in every receiver, started together (the sender starts when
             all of them are heard)
  unicast    the same `imprint multicast receive`, with multicast dropped at the bridge (nftables)
             and --wait-seconds 1: after 1 s of silence each receiver fetches the whole file with
             HTTP Range requests from Debian's nginx in the sender's namespace, through the same
             limited link (`imprint wim apply` takes no URL). The 1 s wait is in its time.

The default link, 50 Mbit/s, is what twenty receivers on this 2-core machine can all take in:
every datagram is delivered twenty times over on the one host (bridge, veth, UDP, a copy into
each receiver), so the host's CPU, not the protocol, limits a faster link (at 100 Mbit/s the
sender's 90 Mbit/s cap averaged 49 Mbit/s with twenty receivers, the cores busy; a Python
receiver that only counts datagrams tops out at about 75-90 Mbit/s with twenty of them:
`python3 scripts/lib/netlab.py selftest 20 --rate 200mbit`). On real machines each has its own CPU.

A run's time is from the receivers' start until the last one has applied its image. The two
sizes alternate (1 then 20, multicast then unicast); medians of --runs. The ratio 20/1 is the
issue's measure: at most 1.5 for multicast, about 20 for unicast. The first and the last
receiver's trees of each run are compared with wimlib-imagex apply (scripts/lib/compare-trees.py).

Peak memory: each receiver's peak RSS from wait4's rusage (`ip netns exec` execs the command);
the table gives the largest and the median of a run's receivers, and the CPU seconds all the
receivers used together (on 2 cores, twenty receivers compete for them).

The imprint run is $IMPRINT_BIN, else the release build (what the boot environment ships; `swift
build -c release` first) when it has the multicast commands, else the debug build (said so on
stderr; most of the receivers' CPU is the kernel's, so the two measure about alike).

Generated data stays in Benchmarks/work/multicast (reused when present); applied trees go to
/tmp/imc-bench-* and are removed after each run. Results are printed and written to
Benchmarks/work/multicast/results-SIZE-RATE.json.

    Benchmarks/multicast.py [--size-mib 200] [--rate 50mbit] [--runs 1] [--receivers 20] [--compress none] [--binary PATH]
    Benchmarks/multicast.py --quick              # 40 MiB, one run: about 2 minutes (the default: about 15, most of it unicast to 20)
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "scripts", "lib"))
import netlab as nl  # noqa: E402

MiB = 1 << 20


def say(message):
    print(message, file=sys.stderr, flush=True)


def prepare(args, binary):
    """The generated WIM, its manifest and the reference tree (made once, reused)."""
    work = os.path.join(HERE, "work", "multicast")
    www = os.path.join(work, f"www-{args.size_mib}-{args.compress}")
    image = os.path.join(www, "image.wim")
    reference = os.path.join(work, f"reference-{args.size_mib}-{args.compress}")
    if not (os.path.exists(image) and os.path.isdir(reference)):
        shutil.rmtree(www, ignore_errors=True)
        shutil.rmtree(reference, ignore_errors=True)
        os.makedirs(www)
        tree = os.path.join(work, "tree")
        shutil.rmtree(tree, ignore_errors=True)
        say(f"generating {args.size_mib} MiB of files and capturing them ({args.compress})")
        nl.make_tree(tree, args.size_mib * MiB)
        nl.capture(tree, image + ".part", args.compress)
        shutil.rmtree(tree)
        nl.run(["wimlib-imagex", "apply", image + ".part", "1", reference])
        os.rename(image + ".part", image)
    sha = nl.make_manifest(binary, image, image + ".manifest")
    return www, image, reference, sha


def served_since(nginx, offset):
    """Bytes nginx sent (response bodies, from its access log) since the log had `offset` bytes."""
    total = 0
    with open(os.path.join(nginx.dir, "access.log")) as f:
        f.seek(offset)
        for line in f:
            fields = line.split('"')
            if len(fields) > 2 and fields[2].split()[1:2] and fields[2].split()[1].isdigit():
                total += int(fields[2].split()[1])
    return total


def log_size(nginx):
    path = os.path.join(nginx.dir, "access.log")
    return os.path.getsize(path) if os.path.exists(path) else 0


def one_run(lab, nginx, binary, image, sha, reference, mode, count, rate_bits, port, timeout):
    """One session of `count` receivers; returns the numbers of the run."""
    scratch = tempfile.mkdtemp(prefix="imc-bench-")
    log_offset = log_size(nginx)
    try:
        if mode == "unicast":
            lab.block_multicast()
        sess = nl.Session(lab=lab, binary=binary, image=image, manifest_url=nginx.url("image.wim.manifest"),
                          manifest_sha256=sha, source_url=nginx.url("image.wim"), scratch=scratch, name=f"{mode}-{count}",
                          rate_bits=rate_bits, port=port, min_receivers=count, exit_when_idle=2,
                          wait_seconds=1 if mode == "unicast" else None)
        kids = [sess.receive(k) for k in range(1, count + 1)]
        started = {}

        def watch():
            # When the sender began sending (its status file, once a second): before that the
            # receivers fetch the manifest and the WIM's header, tables and metadata by HTTP.
            if "at" not in started and ((sess.status() or {}).get("bytesSent") or 0) > 0:
                started["at"] = time.monotonic() - sess.began
        done = sess.wait(kids, timeout, tick=watch if mode == "multicast" else None)
        status = sess.status() or {}
        sess.stop()
        if mode == "unicast":
            lab.unblock_multicast()
        failed = [c for c in kids if c.returncode != 0]
        if not done or failed:
            c = failed[0] if failed else kids[0]
            raise SystemExit(f"{mode} with {count} receivers failed ({'timeout' if not done else f'exit {c.returncode}'}):\n"
                             f"  {' '.join(c.cmd)}\n{c.output()}\nsender:\n{sess.sender.output()}")
        stats = [sess.stats(c.n) for c in kids]
        fell = [bool(nl.fell_back(s)) for s in stats]
        if mode == "multicast" and any(fell):
            say(f"  note: {sum(fell)} of {count} multicast receivers fell back to HTTP")
        if mode == "unicast" and not all(fell):
            raise SystemExit(f"unicast: {fell.count(False)} receivers did not fall back to HTTP with multicast blocked")
        for c in {kids[0].n: kids[0], kids[-1].n: kids[-1]}.values():
            result = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "lib", "compare-trees.py"), c.target, reference],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if result.returncode != 0:
                raise SystemExit(f"{mode} receiver {c.n}: its tree differs from wimlib-imagex apply:\n{result.stdout}")
        http = sum(nl.http_bytes(s) or 0 for s in stats)
        return {
            "seconds": max(c.seconds for c in kids),
            "first": min(c.seconds for c in kids),
            "peak_mib": max(c.peak_mib for c in kids),
            "median_peak_mib": statistics.median(c.peak_mib for c in kids),
            "cpu": sum(c.cpu for c in kids),
            "cpu_system": sum(c.cpu_system for c in kids),
            "http_mib": http / MiB,
            "fell_back": sum(fell),
            "sending_began": started.get("at"),
            "sent_mbit_s": (status.get("bytesSent") or 0) * 8 / status["secondsSending"] / 1e6 if status.get("secondsSending") else None,
            "served_by_nginx_mib": served_since(nginx, log_offset) / MiB,
        }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=200)
    ap.add_argument("--rate", default="50mbit", help="tc limit of the sender's link")
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--receivers", type=int, default=20)
    ap.add_argument("--compress", default="none")
    ap.add_argument("--only", default="multicast,unicast")
    ap.add_argument("--quick", action="store_true", help="40 MiB, one run")
    ap.add_argument("--binary", help="the imprint to run (default: $IMPRINT_BIN, else .build/release/imprint when it "
                                     "has the multicast commands, else .build/debug/imprint)")
    args = ap.parse_args()
    if args.quick:
        args.size_mib, args.runs = 40, 1
    modes = [m for m in ("multicast", "unicast") if m in args.only.split(",")]
    if args.binary:
        os.environ["IMPRINT_BIN"] = os.path.abspath(args.binary)
    binary = nl.imprint_binary(prefer_release=True)
    say(f"imprint: {binary}" + ("" if "/release/" in binary else " (not a release build: `swift build -c release` first)"))
    www, image, reference, sha = prepare(args, binary)
    size = os.path.getsize(image)
    rate_bits = int(nl.parse_rate(args.rate) * 0.9)
    link_seconds = size * 8 / nl.parse_rate(args.rate)
    lab = nl.Lab(receivers=args.receivers, rate=args.rate)
    results = {(m, c): [] for m in modes for c in (1, args.receivers)}
    try:
        lab.up()
        nginx_scratch = tempfile.mkdtemp(prefix="imc-bench-nginx-")
        nginx = nl.Nginx(www, nginx_scratch)
        say(f"{size / MiB:.0f} MiB WIM ({args.compress}) through a {args.rate} link (one copy takes {link_seconds:.1f} s at the "
            f"link's rate), multicast capped at {rate_bits / 1e6:.0f} Mbit/s; {args.runs} run(s); {os.cpu_count()} CPUs")
        port = 7100
        for run in range(args.runs):
            for mode in modes:
                for count in (1, args.receivers):
                    port += 1
                    # Unicast to 20 takes about 20 copies' time; allow for slow machines.
                    timeout = 60 + link_seconds * (count if mode == "unicast" else 3) * 2
                    r = one_run(lab, nginx, binary, image, sha, reference, mode, count, rate_bits, port, timeout)
                    results[(mode, count)].append(r)
                    extra = ""
                    if r["sending_began"] is not None:
                        extra = f"; sending began at {r['sending_began']:.0f} s, at {r['sent_mbit_s']:.0f} Mbit/s on average"
                    say(f"  run {run + 1} {mode} {count}: {r['seconds']:.1f} s (first done {r['first']:.1f} s), "
                        f"peak {r['peak_mib']:.0f} MiB, receivers' CPU {r['cpu']:.1f} s ({r['cpu_system']:.1f} s in the kernel), {r['http_mib']:.1f} MiB by HTTP in their stats, "
                        f"{r['served_by_nginx_mib']:.1f} MiB served by nginx{extra}")
        nginx.stop()
        shutil.rmtree(nginx_scratch, ignore_errors=True)
    finally:
        lab.down()

    n = args.receivers
    med = {k: statistics.median(r["seconds"] for r in v) for k, v in results.items()}
    print(f"\n{size / MiB:.0f} MiB WIM ({args.compress}), sender's link {args.rate} (one copy {link_seconds:.1f} s), "
          f"medians of {args.runs} run(s)")
    print(f"{'':<22}{'1 machine':>11}{f'{n} machines':>14}{f'{n}/1':>8}{'target':>9}{'peak memory (max / median)':>29}{f'CPU of {n}':>10}")
    table = {}
    for mode in modes:
        one, many = med[(mode, 1)], med[(mode, n)]
        peak = max(r["peak_mib"] for r in results[(mode, n)])
        median_peak = statistics.median(r["median_peak_mib"] for r in results[(mode, n)])
        cpu = statistics.median(r["cpu"] for r in results[(mode, n)])
        target = "<= 1.5" if mode == "multicast" else f"~ {n}"
        label = "multicast" if mode == "multicast" else "unicast (HTTP Range)"
        print(f"{label:<22}{one:>9.1f} s{many:>12.1f} s{many / one:>8.2f}{target:>9}{f'{peak:.0f} / {median_peak:.0f} MiB':>29}{cpu:>8.1f} s")
        table[mode] = {"one": one, "many": many, "ratio": many / one, "peak_mib": peak, "median_peak_mib": median_peak, "cpu": cpu,
                       "runs": {str(c): results[(mode, c)] for c in (1, n)}}
    if "multicast" in modes:
        runs = results[("multicast", n)]
        began = [r["sending_began"] for r in runs if r["sending_began"] is not None]
        rates = [r["sent_mbit_s"] for r in runs if r["sent_mbit_s"]]
        print(f"multicast to {n}: the sender began sending {statistics.median(began) if began else float('nan'):.0f} s after the receivers started "
              f"(before joining, each reads the manifest and the WIM's header, tables and metadata by HTTP: nginx served "
              f"{statistics.median(r['served_by_nginx_mib'] for r in runs):.1f} MiB in all), then averaged "
              f"{statistics.median(rates) if rates else float('nan'):.0f} of its {rate_bits / 1e6:.0f} Mbit/s; the receivers' CPU "
              f"{statistics.median(r['cpu'] for r in runs):.1f} s, {statistics.median(r['cpu_system'] for r in runs):.1f} s of it in the kernel")
    if len(modes) == 2:
        print(f"{n} machines: multicast {med[('unicast', n)] / med[('multicast', n)]:.1f}x faster than unicast")
    out = os.path.join(HERE, "work", "multicast", f"results-{args.size_mib}-{args.rate}.json")
    with open(out, "w") as f:
        json.dump({"date": datetime.datetime.now().isoformat(timespec="seconds"), "size": size, "rate": args.rate,
                   "compress": args.compress, "binary": binary, "receivers": n, "runs": args.runs, "results": table}, f, indent=2)
    say(f"written to {out}")
    ratio_ok = "multicast" not in table or table["multicast"]["ratio"] <= 1.5
    sys.exit(0 if ratio_ok else 1)


if __name__ == "__main__":
    try:
        main()
    except nl.LabError as error:
        raise SystemExit(f"error: {error}")
