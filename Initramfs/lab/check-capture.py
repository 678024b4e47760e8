#!/usr/bin/env python3
"""Checks the lab's capture from the host: the WIM the server received against the disk it was
captured from.

    check-capture.py WIM DISK USER_MANIFEST NAME

`wimlib-imagex verify` must pass and `info` name the image NAME; applied by wimlib-imagex, the
image must hold exactly the files and folders of the disk's Windows volume (partition 3, read
through ntfs-3g, read-only), byte for byte, less what DISM's default exclusions leave out
(pagefile.sys, hiberfil.sys, swapfile.sys, System Volume Information, $Recycle.Bin, RECYCLER,
Windows\\CSC) and the run's own state folder; every user file of the manifest is in it."""
import hashlib
import os
import subprocess
import sys
import tempfile

wim, disk, manifest, name = sys.argv[1:5]
EXCLUDED = {"pagefile.sys", "hiberfil.sys", "swapfile.sys", "system volume information", "$recycle.bin", "recycler",
            "windows/csc", "_imprinttasksequence", "$ntfs.log"}


def run(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def tree(root):
    found = {}
    for folder, dirs, files in os.walk(root):
        for d in list(dirs):
            rel = os.path.relpath(os.path.join(folder, d), root).replace(os.sep, "/")
            if rel.lower() in EXCLUDED:
                dirs.remove(d)
                continue
            found[rel] = "dir"
        for f in files:
            rel = os.path.relpath(os.path.join(folder, f), root).replace(os.sep, "/")
            if rel.lower() in EXCLUDED:
                continue
            with open(os.path.join(folder, f), "rb") as handle:
                found[rel] = hashlib.sha256(handle.read()).hexdigest()
    return found


problems = []
verify = subprocess.run(["wimlib-imagex", "verify", wim], text=True, capture_output=True)
if verify.returncode != 0:
    sys.exit(f"  PROBLEM: wimlib-imagex verify fails on the uploaded WIM: {verify.stdout}{verify.stderr}")
info = run("wimlib-imagex", "info", wim, "1")
fields = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in info.splitlines() if ":" in line}
if fields.get("Name") != name:
    problems.append(f"the image is named {fields.get('Name')!r}, not {name!r}")

work = tempfile.mkdtemp(prefix="imprint-lab-capture.")
applied, mounted = os.path.join(work, "applied"), os.path.join(work, "volume")
os.makedirs(mounted)
run("wimlib-imagex", "apply", wim, "1", applied)
start = last = None
for line in run("sgdisk", "-i", "3", disk).splitlines():
    if line.startswith("First sector"):
        start = int(line.split()[2])
    if line.startswith("Last sector"):
        last = int(line.split()[2])
loop = run("losetup", "-f", "--show", "-r", "-o", str(start * 512), "--sizelimit", str((last - start + 1) * 512), disk).strip()
try:
    run("ntfs-3g", "-o", "ro", loop, mounted)
    try:
        source = tree(mounted)
    finally:
        subprocess.run(["fusermount", "-u", mounted])
finally:
    subprocess.run(["losetup", "-d", loop])
image = tree(applied)
missing = sorted(set(source) - set(image))
extra = sorted(set(image) - set(source))
different = sorted(p for p in set(source) & set(image) if source[p] != image[p])
for label, paths in (("missing from the image", missing), ("in the image, not on the disk", extra), ("different", different)):
    if paths:
        problems.append(f"{len(paths)} {label}: " + ", ".join(paths[:8]))
users = [line.split("  ", 1) for line in open(manifest).read().splitlines() if line]
lost = [path for sha, path in users if image.get(path) != sha]
if lost:
    problems.append(f"user files not in the image as they were: {lost}")
subprocess.run(["rm", "-rf", work])
if problems:
    sys.exit("\n".join("  PROBLEM: " + p for p in problems))
files = sum(1 for v in image.values() if v != "dir")
print(f"  the uploaded WIM passes wimlib-imagex verify; \"{name}\" applied by wimlib-imagex equals the disk's volume: "
      f"{files} files and {len(image) - files} folders, {len(users)} user files among them")
if "Product Name" in fields:
    print(f"  its XML names the Windows: {fields['Product Name']}, build {fields.get('Build', '?')}")
