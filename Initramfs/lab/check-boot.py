#!/usr/bin/env python3
"""Checks, from the host, that a lab disk image boots Windows' way after makeBootable (issue 8):
the ESP holds the boot manager (EFI\\Microsoft\\Boot and the fallback EFI\\Boot\\bootx64.efi, the
same bytes as the image's Windows\\Boot\\EFI\\bootmgfw.efi) and a BCD store whose Windows Boot
Loader names the Windows partition, and whose boot manager names the ESP, by the GPT partition
and disk GUIDs read back from the disk image with sgdisk. The store is read with hivexml
(libhivex), not with Imprint's own reader.

    check-boot.py DISK.img REFERENCE_TREE
"""
import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET

BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
WINDOWS_BOOT_LOADER = 0x10200003
problems = []


def problem(text):
    problems.append(text)
    print("  PROBLEM: " + text)


def run(*command):
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout


disk, reference = sys.argv[1], sys.argv[2]
listing = run("sgdisk", "-p", disk)
disk_guid = uuid.UUID(re.search(r"Disk identifier \(GUID\): (\S+)", listing).group(1))
partitions = {}
for line in listing.splitlines():
    m = re.match(r"\s*(\d+)\s+(\d+)\s+(\d+)\s+\S+ \S+\s+([0-9A-F]{4})\s+(.*)", line)
    if m:
        info = run("sgdisk", "-i", m.group(1), disk)
        unique = uuid.UUID(re.search(r"Partition unique GUID: (\S+)", info).group(1))
        partitions[int(m.group(1))] = (int(m.group(2)), int(m.group(3)) - int(m.group(2)) + 1, m.group(4), unique)
esp = next(n for n, p in partitions.items() if p[2] == "EF00")
windows = next(n for n, p in partitions.items() if p[2] == "0700")
print(f"  GUIDs (sgdisk): disk {disk_guid}, ESP #{esp} {partitions[esp][3]}, Windows #{windows} {partitions[windows][3]}")

start, sectors = partitions[esp][0], partitions[esp][1]
loop = run("losetup", "-f", "--show", "-r", "-o", str(start * 512), "--sizelimit", str(sectors * 512), disk).strip()
work = tempfile.mkdtemp(prefix="imprint-lab-esp-")
try:
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    files = {}
    for path in ("EFI/Microsoft/Boot/bootmgfw.efi", "EFI/Boot/bootx64.efi", "EFI/Microsoft/Boot/BCD"):
        target = os.path.join(work, path.replace("/", "_"))
        copied = subprocess.run(["mcopy", "-n", "-i", loop, "::/" + path, target], capture_output=True, text=True, env=env)
        if copied.returncode != 0:
            problem(f"the ESP has no {path}: {copied.stderr.strip()}")
        else:
            files[path] = target
    expected = hashlib.sha256(open(os.path.join(reference, "Windows", "Boot", "EFI", "bootmgfw.efi"), "rb").read()).hexdigest()
    for path in ("EFI/Microsoft/Boot/bootmgfw.efi", "EFI/Boot/bootx64.efi"):
        if path in files:
            same = hashlib.sha256(open(files[path], "rb").read()).hexdigest() == expected
            print(f"  ESP {path}: {'the image' + chr(39) + 's bootmgfw.efi' if same else 'DIFFERENT'}")
            if not same:
                problem(f"{path} is not the image's Windows\\Boot\\EFI\\bootmgfw.efi")

    if "EFI/Microsoft/Boot/BCD" in files:
        root = ET.fromstring(run("hivexml", files["EFI/Microsoft/Boot/BCD"]))
        objects = {}
        for node in root.iter("node"):
            if node.get("name") == "Objects":
                for obj in node.findall("node"):
                    kind, elements = None, {}
                    for part in obj.findall("node"):
                        if part.get("name") == "Description":
                            for value in part.findall("value"):
                                if value.get("key") == "Type":
                                    kind = int(value.get("value"))
                        elif part.get("name") == "Elements":
                            for element in part.findall("node"):
                                for value in element.findall("value"):
                                    if value.get("key") == "Element":
                                        data = value.get("value", "")
                                        if value.get("encoding") == "base64":
                                            data = base64.b64decode(data)
                                        elements[element.get("name").lower()] = data
                    objects[obj.get("name").lower()] = (kind, elements)
        print(f"  BCD (hivexml): {len(objects)} objects")

        def names(data, guid):
            return isinstance(data, bytes) and guid.bytes_le in data

        loaders = [(name, e) for name, (kind, e) in objects.items() if kind == WINDOWS_BOOT_LOADER]
        if not loaders:
            problem("the BCD store has no Windows Boot Loader object (type 0x10200003)")
        for name, elements in loaders:
            for element, what in (("11000001", "device"), ("21000001", "osdevice")):
                data = elements.get(element)
                ok = names(data, partitions[windows][3]) and names(data, disk_guid)
                print(f"  loader {name} {what}: {'Windows partition + disk GUID' if ok else 'WRONG'}")
                if not ok:
                    problem(f"the loader's {what} ({element}) does not name the Windows partition {partitions[windows][3]} on disk {disk_guid}")
            path = elements.get("12000002")
            print(f"  loader path: {path!r}")
            if not isinstance(path, str) or path.lower() != "\\windows\\system32\\winload.efi":
                problem(f"the loader's path is {path!r}, expected \\Windows\\system32\\winload.efi")
        manager = objects.get(BOOTMGR)
        if not manager:
            problem("the BCD store has no Windows Boot Manager object")
        else:
            data = manager[1].get("11000001")
            ok = names(data, partitions[esp][3]) and names(data, disk_guid)
            print(f"  boot manager device: {'ESP partition + disk GUID' if ok else 'WRONG'}")
            if not ok:
                problem(f"the boot manager's device does not name the ESP {partitions[esp][3]}")
            default = manager[1].get("23000003")
            if not loaders or not isinstance(default, str) or default.lower() != loaders[0][0]:
                problem(f"the boot manager's default is {default!r}, not the Windows Boot Loader")
finally:
    subprocess.run(["losetup", "-d", loop], capture_output=True)
    subprocess.run(["rm", "-rf", work])
sys.exit(1 if problems else 0)
