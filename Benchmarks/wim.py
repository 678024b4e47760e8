#!/usr/bin/env python3
"""Races `imprint wim` against `wimlib-imagex` on the same WIM files, side by side in one run.

Captures a corpus (default /usr/share) with wimlib in XPRESS, LZX, LZMS and solid LZMS, then for
each WIM times `verify` and `apply` to a directory with both tools, alternating runs, and prints
the medians and the ratio imprint/wimlib (below 1.0: imprint is faster). Each run's two
contenders run back to back, so it also prints their ratio run by run, its median and a 95%
interval for that median (`median_interval`).

`capture` (only when asked for with --only) races the writers instead: both tools capture the
corpus into a new WIM in each format (imprint `wim capture --compress F`, wimlib-imagex
`capture --compress=F`, both on every CPU; solid is LZMS solid), alternating runs, and the
table gains the WIM sizes and their ratio. `ntfs-capture` does the same from an NTFS image file
holding the corpus (made once by wimlib-imagex applying the corpus's XPRESS WIM; each tool
reads it through libntfs-3g, wimlib-imagex in its NTFS mode).

`stream` (only when asked for with --only) races imprint against itself: a pipable copy of each
WIM (made once with `wimlib-imagex export --pipable`, data copied as stored) applied from a pipe
(`imprint wim apply - 1 DIR < pipable.wim`, what an HTTP or multicast stream delivers) against
the same file applied from disk; the "wimlib" column holds the local apply, the ratio is
streamed/local (1.0: a stream loses nothing). Solid WIMs cannot be pipable and are skipped.

`range` (only when asked for with --only) races imprint against itself too: the regular WIM
applied from its URL on a local nginx (`imprint wim apply http://.../x.wim`, Range requests as
the agent makes them for a regular WIM) against the same file applied from disk; the ratio is
range/local. Its CPU line adds up what each run used (imprint's threads, nginx's processes):
on one machine the server and both ends of TCP take their CPU from the cores the apply runs on.

`ntfs` (only when asked for with --only) applies to an NTFS image file instead: before every run
a fresh sparse image is formatted (`mkfs.ntfs -F -Q`, not timed) on tmpfs, then both tools write
it through libntfs-3g (wimlib-imagex in its NTFS mode). `--fuse` adds a third column for
context: imprint applying to the same kind of image mounted with ntfs-3g over FUSE (the time
includes the unmount, which flushes).

    Benchmarks/wim.py [--corpus DIR] [--runs N] [--formats xpress,lzx,lzms,solid] [--only verify,apply,ntfs]
    Benchmarks/wim.py --formats lzx --only ntfs [--fuse]     # the NTFS apply benchmark
    Benchmarks/wim.py --corpus /usr/share/doc --only capture,ntfs-capture   # the writer
"""
import argparse
import os
import shlex
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
# The same choices for `imprint wim capture`.
IMPRINT_FORMATS = {
    "xpress": ["--compress", "xpress"],
    "lzx": ["--compress", "lzx"],
    "lzms": ["--compress", "lzms"],
    "solid": ["--compress", "lzms", "--solid"],
}
OPERATIONS = {"verify", "apply", "ntfs", "capture", "ntfs-capture", "stream", "range"}

NGINX_CONF = """
daemon off;
worker_processes 2;
pid {work}/nginx.pid;
error_log {work}/nginx-error.log;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


def start_nginx(work, root):
    """Debian's nginx serving `root` on a free loopback port; returns (process, port)."""
    import socket
    import urllib.request
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = os.path.join(work, "nginx-range.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(work=work, port=port, root=root))
    process = subprocess.Popen(["nginx", "-c", conf, "-e", os.path.join(work, "nginx-error.log")])
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).close()
            break
        except Exception as error:  # 403/404 also mean it is up
            if getattr(error, "code", None):
                break
            time.sleep(0.05)
    return process, port


def sh(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kw)


def timed(cmd):
    """Wall time in seconds, peak resident memory in MiB and CPU time in seconds (user and
    system, every thread) of one run."""
    report = os.path.join(HERE, "work", ".time")
    start = time.perf_counter()
    sh(["/usr/bin/time", "-f", "%M %U %S", "-o", report] + cmd)
    elapsed = time.perf_counter() - start
    with open(report) as f:
        peak, user, system = f.read().split()[-3:]
    return elapsed, int(peak) / 1024, float(user) + float(system)


def tree_cpu(pid):
    """CPU seconds used so far by process `pid` and its children (nginx's master and workers)."""
    def used(p):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            return 0, None
        return int(fields[11]) + int(fields[12]), int(fields[1])
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ticks, parent = used(entry)
            if int(entry) == pid or parent == pid:
                total += ticks
    return total / os.sysconf("SC_CLK_TCK")


def median_interval(values, confidence=0.95):
    """A distribution-free interval for the median of `values` (order statistics, binomial
    ranks): the true median of the runs' ratio lies in it with `confidence`, whatever the shape
    of the machine's noise. None for fewer than 6 values, too few for a 95% interval."""
    from math import comb
    n = len(values)
    ordered = sorted(values)
    # The largest j with P(Binomial(n, 1/2) < j) <= (1 - confidence) / 2: the median lies
    # between the j-th smallest and the j-th largest value at least `confidence` of the time.
    below, j = 0.0, 0
    while below + comb(n, j) / 2 ** n <= (1 - confidence) / 2:
        below += comb(n, j) / 2 ** n
        j += 1
    return (ordered[j - 1], ordered[n - j]) if j >= 1 else None


def fresh_ntfs(image, size):
    """A newly formatted, sparse NTFS image file (quick format; its time is not measured)."""
    if os.path.exists(image):
        os.unlink(image)
    with open(image, "wb") as f:
        f.truncate(size)
    sh(["mkfs.ntfs", "-F", "-Q", "-p", "0", "-H", "255", "-S", "63", image])


def fuse_apply(imprint, wim, image, mountpoint):
    """imprint applying to `image` mounted with ntfs-3g; wall time of apply + unmount, and peak RSS."""
    os.makedirs(mountpoint, exist_ok=True)
    sh(["ntfs-3g", "-o", "streams_interface=windows", image, mountpoint])
    try:
        elapsed, peak, _ = timed([imprint, "wim", "apply", wim, "1", mountpoint, "--progress", "none"])
    finally:
        start = time.perf_counter()
        sh(["umount", mountpoint])
        # umount returns once the kernel lets go; ntfs-3g may still be flushing the image.
        while subprocess.run(["pgrep", "-f", f"ntfs-3g .*{image}"], stdout=subprocess.DEVNULL).returncode == 0:
            time.sleep(0.01)
    return elapsed + (time.perf_counter() - start), peak


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", default="/usr/share")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--formats", default="xpress,lzx,lzms,solid")
    ap.add_argument("--only", default="verify,apply",
                    help="operations, comma-separated: verify, apply (to a directory), ntfs (to an NTFS image file), stream (imprint from a pipe vs from the file)")
    ap.add_argument("--work", default=os.path.join(HERE, "work"))
    ap.add_argument("--target", default="/dev/shm/imprint-bench" if os.path.isdir("/dev/shm") else None,
                    help="where apply writes (default: tmpfs, so the VM's disk does not drown both tools in noise)")
    ap.add_argument("--ntfs-image", default=("/dev/shm" if os.path.isdir("/dev/shm") else os.path.join(HERE, "work")) + "/imprint-bench.ntfs",
                    help="the NTFS image file `ntfs` formats before each run (default: on tmpfs)")
    ap.add_argument("--ntfs-size", type=int, default=2 << 30, help="its size in bytes (sparse)")
    ap.add_argument("--fuse", action="store_true", help="ntfs: also time imprint through an ntfs-3g FUSE mount")
    ap.add_argument("--imprint", default=os.path.join(ROOT, ".build/release/imprint"))
    args = ap.parse_args()

    only = set(args.only.split(","))
    if only - OPERATIONS:
        sys.exit(f"unknown operation in --only: {', '.join(sorted(only - OPERATIONS))}")
    if only & {"ntfs", "ntfs-capture"}:
        for tool in ("mkfs.ntfs",) + (("ntfs-3g",) if args.fuse else ()):
            if not shutil.which(tool):
                sys.exit(f"{tool} not found: apt-get install ntfs-3g")
    if not os.path.exists(args.imprint) or os.environ.get("REBUILD", "1") == "1":
        print("building imprint (release)...", file=sys.stderr)
        sh(["swift", "build", "-c", "release", "--product", "imprint"], cwd=ROOT)
    os.makedirs(args.work, exist_ok=True)
    corpus_tag = args.corpus.strip("/").replace("/", "_") or "root"
    results = []
    sizes = {}
    if only & {"capture", "ntfs-capture"}:
        capture_races(args, only, corpus_tag, results, sizes)
        only -= {"capture", "ntfs-capture"}
        if not only:
            report(args, results, sizes, only)
            return
    try:
        run_formats(args, only, corpus_tag, results, sizes)
    finally:
        if nginx_state:
            nginx_state[0].terminate()
            nginx_state[0].wait()
    report(args, results, sizes, only)


nginx_state = []


def run_formats(args, only, corpus_tag, results, sizes):
    nginx = nginx_state[0] if nginx_state else None
    nginx_port = nginx_state[1] if nginx_state else None
    for fmt in args.formats.split(","):
        wim = os.path.join(args.work, f"{corpus_tag}-{fmt}.wim")
        if not os.path.exists(wim):
            print(f"capturing {args.corpus} as {fmt} (once; kept in {args.work})...", file=sys.stderr)
            t, _, _ = timed(["wimlib-imagex", "capture", args.corpus, wim + ".tmp", "bench", "--threads=2"] + FORMATS[fmt])
            os.rename(wim + ".tmp", wim)
            print(f"  captured in {t:.1f} s, {os.path.getsize(wim) / 1e6:.0f} MB", file=sys.stderr)
        # Warm the page cache so both tools read the WIM from memory.
        subprocess.run(["cat", wim], stdout=subprocess.DEVNULL)
        ops = []
        if "verify" in only:
            ops.append(("verify", [args.imprint, "wim", "verify", wim, "--progress", "none"], ["wimlib-imagex", "verify", wim]))
        if "apply" in only:
            target = args.target or os.path.join(args.work, "apply-target")
            ops.append(("apply", [args.imprint, "wim", "apply", wim, "1", target, "--progress", "none"],
                        ["wimlib-imagex", "apply", wim, "1", target]))
        if "stream" in only and fmt != "solid":
            pipable = os.path.join(args.work, f"{corpus_tag}-{fmt}-pipable.wim")
            if not os.path.exists(pipable):
                sh(["wimlib-imagex", "export", wim, "1", pipable + ".tmp", "--pipable"])
                os.rename(pipable + ".tmp", pipable)
            subprocess.run(["cat", pipable], stdout=subprocess.DEVNULL)
            target = args.target or os.path.join(args.work, "apply-target")
            ops.append(("stream", ["sh", "-c", f"exec {args.imprint} wim apply - 1 {target} --progress none < {pipable}"],
                        [args.imprint, "wim", "apply", pipable, "1", target, "--progress", "none"]))
        if "range" in only:
            if nginx is None:
                os.chmod(args.work, 0o755)
                nginx, nginx_port = start_nginx(args.work, args.work)
                nginx_state[:] = [nginx, nginx_port]
            target = args.target or os.path.join(args.work, "apply-target")
            url = f"http://127.0.0.1:{nginx_port}/{os.path.basename(wim)}"
            ops.append(("range", [args.imprint, "wim", "apply", url, "1", target, "--progress", "none"],
                        [args.imprint, "wim", "apply", wim, "1", target, "--progress", "none"]))
        if "ntfs" in only:
            image = args.ntfs_image
            ops.append(("ntfs", [args.imprint, "wim", "apply", wim, "1", image, "--progress", "none"],
                        ["wimlib-imagex", "apply", wim, "1", image]))
        for name, ours, theirs in ops:
            contenders = [("imprint", ours), ("wimlib", theirs)]
            if name == "ntfs" and args.fuse:
                contenders.append(("fuse", None))
            times = {who: [] for who, _ in contenders}
            peaks = {who: 0.0 for who, _ in contenders}
            # CPU seconds of each run: the contender's, and for `range` the server's besides.
            cpu = {who: [] for who, _ in contenders}
            server_cpu = []
            for run in range(args.runs):
                # Alternate who goes first so neither always gets the warmer machine.
                order = contenders[run % len(contenders):] + contenders[:run % len(contenders)]
                for who, cmd in order:
                    if name in ("apply", "stream", "range"):
                        shutil.rmtree(target, ignore_errors=True)
                        sh(["sync"])
                    if name == "ntfs":
                        fresh_ntfs(image, args.ntfs_size)
                    if who == "fuse":
                        elapsed, peak = fuse_apply(args.imprint, wim, image, os.path.join(args.work, "ntfs-mount"))
                    else:
                        served_before = tree_cpu(nginx_state[0].pid) if name == "range" and who == "imprint" else 0
                        elapsed, peak, used = timed(cmd)
                        cpu[who].append(used)
                        if name == "range" and who == "imprint":
                            server_cpu.append(tree_cpu(nginx_state[0].pid) - served_before)
                    times[who].append(elapsed)
                    peaks[who] = max(peaks[who], peak)
            if name in ("apply", "stream", "range"):
                shutil.rmtree(target, ignore_errors=True)
            if name == "ntfs" and os.path.exists(image):
                os.unlink(image)
            a, b = statistics.median(times["imprint"]), statistics.median(times["wimlib"])
            fuse = statistics.median(times["fuse"]) if "fuse" in times else None
            results.append((fmt, name, a, b, a / b, peaks, fuse))
            labels = {"stream": ("streamed", "local"), "range": ("range", "local")}.get(name, ("imprint", "wimlib"))
            print(f"{fmt:7} {name:7} {labels[0]} {a:7.2f} s   {labels[1]} {b:7.2f} s   ratio {a / b:5.2f}   "
                  f"peak memory {peaks['imprint']:.0f} / {peaks['wimlib']:.0f} MiB"
                  + (f"   (imprint over FUSE {fuse:.2f} s, {peaks['fuse']:.0f} MiB)" if fuse is not None else ""), flush=True)
            print("  runs: " + "; ".join(f"{who} " + " ".join(f"{t:.2f}" for t in ts) for who, ts in times.items()),
                  flush=True)
            # Each run's two contenders ran one after the other: their ratio is immune to the
            # machine drifting over the minutes (a shared VM's speed moves by 10-20%), which
            # the ratio of the medians is not.
            paired = [a / b for a, b in zip(times["imprint"], times["wimlib"])]
            interval = median_interval(paired)
            print(f"  ratio run by run: {' '.join(f'{r:.2f}' for r in paired)}; median {statistics.median(paired):.2f}"
                  + (f" (95% interval {interval[0]:.2f}-{interval[1]:.2f})" if interval else ""), flush=True)
            if name == "range":
                # On one machine the server's CPU and both ends of TCP share the cores the apply uses.
                ours, local, server = (statistics.median(x) for x in (cpu["imprint"], cpu["wimlib"], server_cpu))
                print(f"  CPU seconds, medians: range {ours:.2f} + nginx {server:.2f}, local {local:.2f}; "
                      f"the Range apply costs {ours + server - local:+.2f} s of CPU ({(ours + server) / local - 1:+.0%})",
                      flush=True)



def report(args, results, sizes, only):
    print()
    print(f"corpus: {args.corpus}, {args.runs} runs each, medians, {os.cpu_count()} CPUs, apply target {args.target}"
          + (f", NTFS image {args.ntfs_image} ({args.ntfs_size >> 20} MiB)" if "ntfs" in only else ""))
    print("| format | operation | imprint (s) | wimlib-imagex (s) | ratio imprint/wimlib | peak RSS imprint / wimlib (MiB) | WIM size imprint / wimlib (MB) | size ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for fmt, name, a, b, r, peaks, _ in results:
        size = sizes.get((fmt, name))
        sized = f"{size[0] / 1e6:.2f} / {size[1] / 1e6:.2f} | {size[0] / size[1]:.4f}" if size else "| "
        print(f"| {fmt} | {name} | {a:.2f} | {b:.2f} | {r:.2f} | {peaks['imprint']:.0f} / {peaks['wimlib']:.0f} | {sized} |")
    for fmt, name, a, b, r, peaks, fuse in results:
        if fuse is not None:
            print(f"{fmt} {name}: imprint through an ntfs-3g FUSE mount {fuse:.2f} s, peak RSS {peaks['fuse']:.0f} MiB")


def ntfs_corpus(args, corpus_tag):
    """An NTFS image file holding the corpus, made once (wimlib-imagex applies the corpus's XPRESS WIM)."""
    image = os.path.join(args.work, f"{corpus_tag}.ntfs")
    if os.path.exists(image):
        return image
    wim = os.path.join(args.work, f"{corpus_tag}-xpress.wim")
    if not os.path.exists(wim):
        sh(["wimlib-imagex", "capture", args.corpus, wim + ".tmp", "bench", "--threads=2", "--compress=XPRESS"])
        os.rename(wim + ".tmp", wim)
    size = max(args.ntfs_size, sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(args.corpus) for f in fs
                                   if os.path.isfile(os.path.join(d, f))) * 2 + (256 << 20))
    print(f"making an NTFS image of {args.corpus} (once; kept as {image})...", file=sys.stderr)
    fresh_ntfs(image + ".tmp", size)
    sh(["wimlib-imagex", "apply", wim, "1", image + ".tmp"])
    os.rename(image + ".tmp", image)
    return image


def capture_races(args, only, corpus_tag, results, sizes):
    """imprint wim capture against wimlib-imagex capture, from the corpus folder and/or an NTFS image."""
    threads = str(os.cpu_count() or 1)
    sources = []
    if "capture" in only:
        sources.append(("capture", args.corpus))
    if "ntfs-capture" in only:
        sources.append(("ntfs-capture", ntfs_corpus(args, corpus_tag)))
    for name, source in sources:
        # Warm the page cache: both tools read the source from memory.
        # Into a pipe, not /dev/null: GNU tar writing to /dev/null skips reading the files' data.
        subprocess.run(f"tar cf - {shlex.quote(source)} | cat > /dev/null", shell=True, stderr=subprocess.DEVNULL)
        if os.path.isfile(source):
            subprocess.run(["cat", source], stdout=subprocess.DEVNULL)
        for fmt in args.formats.split(","):
            outputs = {"imprint": os.path.join(args.work, f"race-imprint-{fmt}.wim"), "wimlib": os.path.join(args.work, f"race-wimlib-{fmt}.wim")}
            contenders = [
                ("imprint", [args.imprint, "wim", "capture", source, outputs["imprint"], "bench", "--threads", threads, "--progress", "none"]
                 + IMPRINT_FORMATS[fmt]),
                ("wimlib", ["wimlib-imagex", "capture", source, outputs["wimlib"], "bench", "--threads=" + threads] + FORMATS[fmt]),
            ]
            times = {who: [] for who, _ in contenders}
            peaks = {who: 0.0 for who, _ in contenders}
            for run in range(args.runs):
                order = contenders[run % 2:] + contenders[:run % 2]
                for who, cmd in order:
                    if os.path.exists(outputs[who]):
                        os.unlink(outputs[who])
                    elapsed, peak, _ = timed(cmd)
                    times[who].append(elapsed)
                    peaks[who] = max(peaks[who], peak)
            size = (os.path.getsize(outputs["imprint"]), os.path.getsize(outputs["wimlib"]))
            sizes[(fmt, name)] = size
            for path in outputs.values():
                os.unlink(path)
            a, b = statistics.median(times["imprint"]), statistics.median(times["wimlib"])
            results.append((fmt, name, a, b, a / b, peaks, None))
            print(f"{fmt:7} {name:12} imprint {a:7.2f} s   wimlib {b:7.2f} s   ratio {a / b:5.2f}   "
                  f"peak memory {peaks['imprint']:.0f} / {peaks['wimlib']:.0f} MiB   "
                  f"size {size[0] / 1e6:.2f} / {size[1] / 1e6:.2f} MB ({size[0] / size[1]:.4f})", flush=True)


if __name__ == "__main__":
    main()
