#!/usr/bin/env python3
"""Checks, from the host, a lab machine's disk image after a deployment.

  check-disk.py DISK --table gpt|mbr --reference DIR [--success | --failure]
                [--computer NAME] [--driver PKG]... [--no-driver PKG]...
                [--user-manifest FILE --old-build TEXT]

Reads the partition table with sgdisk (GPT, `-v` must find no problem) or sfdisk (MBR), exposes
each partition as its own read-only loop device (the host kernel has no partition parsers),
asks blkid what it holds, mounts the Windows volume read-only with ntfs-3g (FUSE) and compares
every file with DIR (the WIM applied by wimlib-imagex) by SHA-256. --success also checks the
answer file and the drivers; --failure checks that the disk holds no finished deployment.
--user-manifest (lines "sha256  path") checks a refresh kept every user file."""
import argparse
import signal
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

parser = argparse.ArgumentParser()
parser.add_argument("disk")
parser.add_argument("--table", choices=["gpt", "mbr"], required=True)
parser.add_argument("--reference", required=True)
group = parser.add_mutually_exclusive_group(required=True)
group.add_argument("--success", action="store_true")
group.add_argument("--failure", action="store_true")
parser.add_argument("--computer")
parser.add_argument("--driver", action="append", default=[])
parser.add_argument("--no-driver", action="append", default=[])
parser.add_argument("--user-manifest")
parser.add_argument("--old-build")
args = parser.parse_args()

problems = []
# Interrupted (the lab's clean-up sends SIGTERM): unmount and detach in `finally` all the same.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def problem(text):
    problems.append(text)
    print("  PROBLEM: " + text, file=sys.stderr)


def run(*command, check=True):
    result = subprocess.run(command, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}")
    return result


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree(root):
    """relative path (with /) -> ("dir",) or ("file", sha256)"""
    nodes = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            nodes[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir",)
        for name in filenames:
            full = os.path.join(dirpath, name)
            nodes[os.path.relpath(full, root)] = ("file", sha256(full)) if not os.path.islink(full) else ("link",)
    return nodes


# 1. The partition table.
partitions = []  # (number, start sector, sectors, type)
if args.table == "gpt":
    verify = run("sgdisk", "-v", args.disk, check=False)
    print("  sgdisk -v: " + " ".join(verify.stdout.split("\n")[-3:]).strip())
    if "No problems found" not in verify.stdout:
        problem("sgdisk -v reports problems:\n" + verify.stdout)
    listing = run("sgdisk", "-p", args.disk).stdout
    for line in listing.splitlines():
        m = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+([0-9A-F]{4})\s+(.*)", line)
        if m:
            start, end = int(m.group(2)), int(m.group(3))
            partitions.append((int(m.group(1)), start, end - start + 1, m.group(4), m.group(5).strip()))
    types = [p[3] for p in partitions]
    print("  GPT: " + ", ".join(f"{n}:{t} {name!r} {size * 512 // 2**20} MiB @{start}" for n, start, size, t, name in partitions))
    if types[:3] != ["EF00", "0C01", "0700"]:
        problem(f"GPT partition types are {types}, expected ESP (EF00), MSR (0C01), basic data (0700)...")
else:
    dump = json.loads(run("sfdisk", "--json", args.disk).stdout)["partitiontable"]
    if dump.get("label") != "dos":
        problem(f"the table is {dump.get('label')}, expected MBR (dos)")
    for i, p in enumerate(dump.get("partitions", []), 1):
        partitions.append((i, p["start"], p["size"], p["type"].upper(), "active" if p.get("bootable") else ""))
    print("  MBR: " + ", ".join(f"{n}:type {t} {flag} {size * 512 // 2**20} MiB @{start}" for n, start, size, t, flag in partitions))
    if [p[3] for p in partitions] != ["7", "7"] or partitions[0][4] != "active":
        problem("MBR partitions are not [active NTFS (7) System Reserved, NTFS (7) Windows]")
    for _, start, _, _, _ in partitions:
        if start % 2048:
            problem(f"a partition starts at sector {start}, not on a 1 MiB boundary")

loops, mounts = [], []
try:
    def attach(start, sectors):
        loop = run("losetup", "-f", "--show", "-r", "-o", str(start * 512), "--sizelimit", str(sectors * 512), args.disk).stdout.strip()
        loops.append(loop)
        return loop

    filesystems = {}
    for number, start, sectors, ptype, _ in partitions:
        loop = attach(start, sectors)
        probe = run("blkid", "-p", "-o", "export", loop, check=False).stdout
        # blkid -o export escapes spaces and the like with a backslash.
        fields = {k: re.sub(r"\\(.)", r"\1", v) for k, v in (line.split("=", 1) for line in probe.splitlines() if "=" in line)}
        filesystems[number] = (fields.get("TYPE", ""), fields.get("VERSION", ""), fields.get("LABEL", ""), loop, sectors)
    print("  filesystems: " + ", ".join(f"{n}:{t or '-'}{' ' + v if v else ''}{' ' + repr(l) if l else ''}"
                                         for n, (t, v, l, _, _) in filesystems.items()))
    if args.table == "gpt":
        if filesystems[partitions[0][0]][0] != "vfat" or filesystems[partitions[0][0]][1] != "FAT32":
            problem(f"the ESP holds {filesystems[partitions[0][0]][:2]}, expected vfat FAT32")
    ntfs = [(n, fs) for n, fs in filesystems.items() if fs[0] == "ntfs"]
    windows = [(n, fs) for n, fs in ntfs if fs[2] == "Windows"]
    if not windows:
        raise RuntimeError("no NTFS volume labelled Windows on the disk")
    number, (_, _, _, loop, _) = windows[0]

    # 2. The Windows volume, read-only over FUSE.
    mountpoint = tempfile.mkdtemp(prefix="imprint-lab-ntfs-")
    run("ntfs-3g", "-o", "ro", loop, mountpoint)
    mounts.append(mountpoint)
    volume = tree(mountpoint)
    reference = tree(args.reference)
    missing = [p for p in reference if p not in volume]
    different = [p for p in reference if p in volume and volume[p] != reference[p]]
    same = len(reference) - len(missing) - len(different)
    print(f"  volume {number}: {len(volume)} entries; of the image's {len(reference)}: {same} identical, "
          f"{len(missing)} missing, {len(different)} different")
    unattend_path = os.path.join(mountpoint, "Windows", "Panther", "unattend.xml")

    software = "Windows/System32/config/SOFTWARE"
    if args.success and args.driver and software in different:
        # injectDrivers adds the driver folder to DevicePath in the SOFTWARE hive, as Windows
        # Setup's offline servicing does: the hive differs by design; read it back with hivex.
        different.remove(software)
        hive = os.path.join(mountpoint, *software.split("/"))
        device_path = run("hivexget", hive, "Microsoft\\Windows\\CurrentVersion", "DevicePath", check=False).stdout.strip()
        product = run("hivexget", hive, "Microsoft\\Windows NT\\CurrentVersion", "ProductName", check=False).stdout.strip()
        expected = run("hivexget", os.path.join(args.reference, *software.split("/")), "Microsoft\\Windows NT\\CurrentVersion",
                       "ProductName", check=False).stdout.strip()
        print(f"  SOFTWARE hive (changed by injectDrivers): DevicePath {device_path!r}, ProductName {product!r}")
        if "\\Drivers" not in device_path:
            problem(f"the SOFTWARE hive's DevicePath {device_path!r} does not name the Drivers folder")
        if not product or product != expected:
            problem(f"the SOFTWARE hive's ProductName is {product!r}, expected {expected!r}")
    if args.success:
        for p in (missing + different)[:10]:
            problem(f"{p}: {'missing' if p in missing else 'differs from the WIM'}")
        if not os.path.exists(unattend_path):
            problem("no Windows\\Panther\\unattend.xml")
        else:
            text = open(unattend_path, encoding="utf-8").read()
            ns = {"u": "urn:schemas-microsoft-com:unattend"}
            root = ET.fromstring(text)
            names = [e.text for e in root.iter("{urn:schemas-microsoft-com:unattend}ComputerName")]
            paths = [e.text for e in root.iter("{urn:schemas-microsoft-com:unattend}Path")]
            print(f"  unattend.xml: {len(text)} bytes, ComputerName {names}, DriverPaths {paths}")
            if "${" in text:
                problem("unattend.xml still holds an unsubstituted ${...}")
            if args.computer and names != [args.computer]:
                problem(f"unattend.xml ComputerName is {names}, expected {args.computer}")
            for pkg in args.driver:
                if not any(p and p.rstrip("\\").endswith("\\" + pkg) for p in paths):
                    problem(f"unattend.xml lists no DriverPaths entry for {pkg}")
        for pkg in args.driver:
            folder = os.path.join(mountpoint, "Drivers", pkg)
            infs = [f for f in os.listdir(folder) if f.lower().endswith(".inf")] if os.path.isdir(folder) else []
            if not infs:
                problem(f"Drivers\\{pkg} is missing or holds no INF")
            else:
                print(f"  Drivers\\{pkg}: {sorted(os.listdir(folder))}")
        for pkg in args.no_driver:
            if os.path.exists(os.path.join(mountpoint, "Drivers", pkg)):
                problem(f"Drivers\\{pkg} was copied although no device of the machine matches it")
    else:
        if os.path.exists(unattend_path):
            problem("a failed deployment left Windows\\Panther\\unattend.xml: the disk looks finished")
        if os.path.exists(os.path.join(mountpoint, "Drivers")):
            problem("a failed deployment went on to copy drivers")
        if not missing and not different:
            problem("the volume holds the whole image although the apply was reported failed")
        else:
            print(f"  incomplete, as reported: e.g. {(different + missing)[:3]}")

    if args.user_manifest:
        kept = bad = 0
        for line in open(args.user_manifest):
            digest, rel = line.rstrip("\n").split("  ", 1)
            path = os.path.join(mountpoint, rel)
            if not os.path.isfile(path):
                problem(f"user file {rel} is gone")
                bad += 1
            elif sha256(path) != digest:
                problem(f"user file {rel} changed")
                bad += 1
            else:
                kept += 1
        print(f"  user files: {kept} intact (SHA-256), {bad} lost or changed")
        old = os.path.join(mountpoint, "Windows.old", "Windows", "System32", "imprint-lab-build.txt")
        if not os.path.isfile(old) or (args.old_build and args.old_build not in open(old).read()):
            problem("Windows.old\\Windows\\System32\\imprint-lab-build.txt does not hold the old build")
        else:
            print("  Windows.old holds the old system: " + open(old).read().splitlines()[0])
        # One Windows.old, even after power cuts, and no run state left behind by a finished run.
        extra = sorted(n for n in os.listdir(mountpoint) if n.lower().startswith("windows.old."))
        if extra:
            problem("the old system is split across " + ", ".join(["Windows.old"] + extra))
        if os.path.exists(os.path.join(mountpoint, "_ImprintTaskSequence")):
            problem("_ImprintTaskSequence (the run's state) is still on the volume after the run ended")
        for leftover in ("Windows/Temp/old-only.tmp", "Program Files/Old App", "Program Files (x86)"):
            if os.path.exists(os.path.join(mountpoint, leftover)):
                problem(f"{leftover} of the old system is still in place (not moved to Windows.old)")
except Exception as error:  # noqa: BLE001 - every failure is reported as a problem
    problem(str(error))
finally:
    for mountpoint in mounts:
        for attempt in range(10):
            if subprocess.run(["fusermount", "-u", mountpoint], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
        os.rmdir(mountpoint)
    time.sleep(0.2)
    for loop in loops:
        for attempt in range(10):
            if subprocess.run(["losetup", "-d", loop], capture_output=True).returncode == 0:
                break
            time.sleep(0.5)
sys.exit(1 if problems else 0)
