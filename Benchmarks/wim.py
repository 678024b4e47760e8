#!/usr/bin/env python3
"""Races `imprint wim` against `wimlib-imagex` on the same WIM files, side by side in one run.

Captures a corpus (default /usr/share) with wimlib in XPRESS, LZX, LZMS and solid LZMS, then for
each WIM times `verify` and `apply` to a directory with both tools, alternating runs, and prints
the medians and the ratio imprint/wimlib (below 1.0: imprint is faster).

    Benchmarks/wim.py [--corpus DIR] [--runs N] [--formats xpress,lzx,lzms,solid] [--only verify|apply]
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FORMATS = {
    "xpress": ["--compress=XPRESS"],
    "lzx": ["--compress=LZX"],
    "lzms": ["--compress=LZMS"],
    "solid": ["--solid"],
}


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def timed(cmd):
    """Wall time in seconds and peak resident memory in MiB of one run."""
    report = os.path.join(HERE, "work", ".time")
    start = time.perf_counter()
    sh(["/usr/bin/time", "-f", "%M", "-o", report] + cmd)
    elapsed = time.perf_counter() - start
    with open(report) as f:
        peak = int(f.read().split()[-1]) / 1024
    return elapsed, peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/usr/share")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", default="xpress,lzx,lzms,solid")
    ap.add_argument("--only", choices=["verify", "apply"], default=None)
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--target", default="/dev/shm/imprint-bench" if os.path.isdir("/dev/shm") else None,
                    help="where apply writes (default: tmpfs, so the VM's disk does not drown both tools in noise)")
    ap.add_argument("--imprint", default=os.path.join(ROOT, ".build/release/imprint"))
    args = ap.parse_args()

    if not os.path.exists(args.imprint) or os.environ.get("REBUILD", "1") == "1":
        print("building imprint (release)...", file=sys.stderr)
        sh(["swift", "build", "-c", "release", "--product", "imprint"], cwd=ROOT)
    os.makedirs(args.work, exist_ok=True)
    corpus_tag = args.corpus.strip("/").replace("/", "_") or "root"
    results = []
    for fmt in args.formats.split(","):
        wim = os.path.join(args.work, f"{corpus_tag}-{fmt}.wim")
        if not os.path.exists(wim):
            print(f"capturing {args.corpus} as {fmt} (once; kept in {args.work})...", file=sys.stderr)
            t, _ = timed(["wimlib-imagex", "capture", args.corpus, wim + ".tmp", "bench", "--threads=2"] + FORMATS[fmt])
            os.rename(wim + ".tmp", wim)
            print(f"  captured in {t:.1f} s, {os.path.getsize(wim) / 1e6:.0f} MB", file=sys.stderr)
        # Warm the page cache so both tools read the WIM from memory.
        subprocess.run(["cat", wim], stdout=subprocess.DEVNULL)
        ops = []
        if args.only in (None, "verify"):
            ops.append(("verify", [args.imprint, "wim", "verify", wim, "--progress", "none"], ["wimlib-imagex", "verify", wim]))
        if args.only in (None, "apply"):
            target = args.target or os.path.join(args.work, "apply-target")
            ops.append(("apply", [args.imprint, "wim", "apply", wim, "1", target, "--progress", "none"],
                        ["wimlib-imagex", "apply", wim, "1", target]))
        for name, ours, theirs in ops:
            times = {"imprint": [], "wimlib": []}
            peaks = {"imprint": 0.0, "wimlib": 0.0}
            for run in range(args.runs):
                # Alternate who goes first so neither always gets the warmer machine.
                order = [("imprint", ours), ("wimlib", theirs)]
                if run % 2:
                    order.reverse()
                for who, cmd in order:
                    if name == "apply":
                        shutil.rmtree(target, ignore_errors=True)
                        sh(["sync"])
                    elapsed, peak = timed(cmd)
                    times[who].append(elapsed)
                    peaks[who] = max(peaks[who], peak)
            if name == "apply":
                shutil.rmtree(target, ignore_errors=True)
            a, b = statistics.median(times["imprint"]), statistics.median(times["wimlib"])
            results.append((fmt, name, a, b, a / b, peaks))
            print(f"{fmt:7} {name:7} imprint {a:7.2f} s   wimlib {b:7.2f} s   ratio {a / b:5.2f}   "
                  f"peak memory {peaks['imprint']:.0f} / {peaks['wimlib']:.0f} MiB", flush=True)

    print()
    print(f"corpus: {args.corpus}, {args.runs} runs each, medians, {os.cpu_count()} CPUs, apply target {args.target}")
    print("| format | operation | imprint (s) | wimlib-imagex (s) | ratio imprint/wimlib | peak RSS imprint / wimlib (MiB) |")
    print("|---|---|---|---|---|---|")
    for fmt, name, a, b, r, peaks in results:
        print(f"| {fmt} | {name} | {a:.2f} | {b:.2f} | {r:.2f} | {peaks['imprint']:.0f} / {peaks['wimlib']:.0f} |")


if __name__ == "__main__":
    main()
