#!/usr/bin/env python3
"""Checks, from the host, that a lab disk image boots Windows' way after makeBootable (issues 8
and 17). The store is read with hivexml (libhivex), the volumes with ntfs-3g's tools and
mtools, the disk's identity with sgdisk and sfdisk: never with Imprint's own readers.

GPT (UEFI): the ESP holds the boot manager (EFI\\Microsoft\\Boot and the fallback
EFI\\Boot\\bootx64.efi, the same bytes as the image's Windows\\Boot\\EFI\\bootmgfw.efi) and a BCD
store whose Windows Boot Loader names the Windows partition, and whose boot manager names the
ESP, by the GPT partition and disk GUIDs. With a recovery partition, Windows RE as Setup leaves
it: Winre.wim and boot.sdi in its \\Recovery\\WindowsRE (the image's bytes), ReAgent.xml naming
the WinRE loader and the partition's offset, and the store's WinRE loader (a ramdisk of that
Winre.wim), its ramdisk options (boot.sdi) and the Windows loader's recoverysequence.

MBR (BIOS): the active partition holds \\bootmgr (the image's Windows\\Boot\\PCAT\\bootmgr) and
\\Boot\\BCD, whose loader is winload.exe on the Windows partition named by disk signature and
offset; the MBR carries GRUB's boot code and core.img follows it.

    check-boot.py DISK.img REFERENCE_TREE
"""
import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import uuid
import xml.etree.ElementTree as ET

BOOTMGR = "{9dea862c-5cdd-4e70-acc1-f32b344d4795}"
WINDOWS_BOOT_LOADER = 0x10200003
DEVICE_OPTIONS = 0x30000000
RECOVERY_GPT_TYPE = "2700"  # sgdisk's code for DE94BBA4-06D1-4D40-A16A-BFD50179D6AC
problems = []


def problem(text):
    problems.append(text)
    print("  PROBLEM: " + text)


def run(*command, binary=False):
    return subprocess.run(command, capture_output=True, text=not binary, check=True).stdout


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def reference_file(*parts):
    with open(os.path.join(reference, *parts), "rb") as f:
        return f.read()


disk, reference = sys.argv[1], sys.argv[2]
loops = []
work = tempfile.mkdtemp(prefix="imprint-lab-boot-")


def attach(start, sectors):
    loop = run("losetup", "-f", "--show", "-r", "-o", str(start * 512), "--sizelimit", str(sectors * 512), disk).strip()
    loops.append(loop)
    return loop


def ntfs_file(loop, path):
    """A file's bytes on an NTFS volume, or None."""
    result = subprocess.run(["ntfscat", "--force", loop, path], capture_output=True)
    return result.stdout if result.returncode == 0 else None


def read_store(path):
    """{object name: (type, {element: str | bytes | [str]})}, read by hivexml."""
    root = ET.fromstring(run("hivexml", path))
    objects = {}
    for node in root.iter("node"):
        if node.get("name") != "Objects":
            continue
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
                            if value.get("key") != "Element":
                                continue
                            if value.get("type") == "string-list":
                                data = [s.text or "" for s in value.findall("string") if s.text]
                            else:
                                data = value.get("value", "")
                                if value.get("encoding") == "base64":
                                    data = base64.b64decode(data)
                            elements[element.get("name").lower()] = data
            objects[obj.get("name").lower()] = (kind, elements)
    print(f"  BCD (hivexml): {len(objects)} objects")
    return objects


def contains(data, *pieces):
    return isinstance(data, bytes) and all(piece in data for piece in pieces)


def check_loader(objects, path, names_windows, what_windows):
    loaders = [(name, e) for name, (kind, e) in objects.items()
               if kind == WINDOWS_BOOT_LOADER and e.get("26000022") != b"\x01"]
    if not loaders:
        problem("the BCD store has no Windows Boot Loader object (type 0x10200003)")
    for name, elements in loaders:
        for element, what in (("11000001", "device"), ("21000001", "osdevice")):
            ok = names_windows(elements.get(element))
            print(f"  loader {name} {what}: {what_windows if ok else 'WRONG'}")
            if not ok:
                problem(f"the loader's {what} ({element}) does not name the Windows partition ({what_windows})")
        found = elements.get("12000002")
        print(f"  loader path: {found!r}")
        if not isinstance(found, str) or found.lower() != path:
            problem(f"the loader's path is {found!r}, expected {path}")
    return loaders


def check_manager(objects, loaders, names_system, what_system):
    manager = objects.get(BOOTMGR)
    if not manager:
        problem("the BCD store has no Windows Boot Manager object")
        return
    ok = names_system(manager[1].get("11000001"))
    print(f"  boot manager device: {what_system if ok else 'WRONG'}")
    if not ok:
        problem(f"the boot manager's device does not name the system partition ({what_system})")
    default = manager[1].get("23000003")
    if not loaders or not isinstance(default, str) or default.lower() != loaders[0][0]:
        problem(f"the boot manager's default is {default!r}, not the Windows Boot Loader")


def check_recovery(objects, loaders, recovery, recovery_loop, windows_loop, disk_guid):
    """Windows RE as Setup leaves it, on the GPT disk's recovery partition."""
    start, _, _, unique = recovery
    for path, source in (("Recovery/WindowsRE/Winre.wim", ("Windows", "System32", "Recovery", "Winre.wim")),
                         ("Recovery/WindowsRE/boot.sdi", ("Windows", "Boot", "DVD", "EFI", "boot.sdi"))):
        data = ntfs_file(recovery_loop, path)
        same = data is not None and sha256(data) == sha256(reference_file(*source))
        print(f"  recovery partition {path}: {'the image' + chr(39) + 's ' + source[-1] if same else 'MISSING or DIFFERENT'}")
        if not same:
            windows_path = "\\".join(source)
            problem(f"the recovery partition's {path} is not the image's {windows_path}")
    winre = [(name, e) for name, (kind, e) in objects.items() if kind == WINDOWS_BOOT_LOADER and e.get("26000022") == b"\x01"]
    if len(winre) != 1:
        problem(f"the store has {len(winre)} WinRE loaders (winpe yes), expected 1")
        return
    winre_name, winre_elements = winre[0]
    image = "\\Recovery\\WindowsRE\\Winre.wim".encode("utf-16-le")
    for element, what in (("11000001", "device"), ("21000001", "osdevice")):
        ok = contains(winre_elements.get(element), unique.bytes_le, disk_guid.bytes_le, image)
        print(f"  WinRE loader {winre_name} {what}: {'ramdisk of Winre.wim on the recovery partition' if ok else 'WRONG'}")
        if not ok:
            problem(f"the WinRE loader's {what} is not a ramdisk of \\Recovery\\WindowsRE\\Winre.wim on partition {unique}")
    options = [(name, e) for name, (kind, e) in objects.items() if kind == DEVICE_OPTIONS and "32000004" in e]
    if not options or options[0][1].get("32000004", "").lower() != "\\recovery\\windowsre\\boot.sdi" \
            or not contains(options[0][1].get("31000003"), unique.bytes_le):
        problem("no ramdisk options object naming \\Recovery\\WindowsRE\\boot.sdi on the recovery partition")
    else:
        print(f"  ramdisk options {options[0][0]}: boot.sdi on the recovery partition")
    for name, elements in loaders:
        sequence = elements.get("14000008")
        enabled = elements.get("16000009")
        print(f"  loader {name}: recoverysequence {sequence}, recoveryenabled {enabled!r}")
        if sequence != [winre_name] or enabled != b"\x01":
            problem(f"the Windows loader's recoverysequence/recoveryenabled do not name the WinRE loader {winre_name}")
    reagent = ntfs_file(windows_loop, "Windows/System32/Recovery/ReAgent.xml")
    if reagent is None:
        problem("the Windows volume has no Windows\\System32\\Recovery\\ReAgent.xml")
        return
    text = reagent.decode("utf-8-sig")
    bcd_id = re.search(r'<WinreBCD id="([^"]+)"', text)
    location = re.search(r'<WinreLocation path="([^"]*)" id="(\d+)" offset="(\d+)" guid="([^"]+)"', text)
    print(f"  ReAgent.xml: WinreBCD {bcd_id and bcd_id.group(1)}, WinreLocation {location and location.groups()}")
    if not bcd_id or bcd_id.group(1).lower() != winre_name:
        problem(f"ReAgent.xml's WinreBCD does not name the WinRE loader {winre_name}")
    if not location or location.group(1) != "\\Recovery\\WindowsRE" or int(location.group(3)) != start * 512 \
            or uuid.UUID(location.group(4)) != disk_guid:
        problem(f"ReAgent.xml's WinreLocation does not name \\Recovery\\WindowsRE at byte {start * 512} of disk {disk_guid}")


def check_gpt():
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
    recovery = next((n for n, p in partitions.items() if p[2] == RECOVERY_GPT_TYPE), None)
    print(f"  GUIDs (sgdisk): disk {disk_guid}, ESP #{esp} {partitions[esp][3]}, Windows #{windows} {partitions[windows][3]}"
          + (f", recovery #{recovery} {partitions[recovery][3]}" if recovery else ""))

    loop = attach(partitions[esp][0], partitions[esp][1])
    env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
    files = {}
    for path in ("EFI/Microsoft/Boot/bootmgfw.efi", "EFI/Boot/bootx64.efi", "EFI/Microsoft/Boot/BCD"):
        target = os.path.join(work, path.replace("/", "_"))
        copied = subprocess.run(["mcopy", "-n", "-i", loop, "::/" + path, target], capture_output=True, text=True, env=env)
        if copied.returncode != 0:
            problem(f"the ESP has no {path}: {copied.stderr.strip()}")
        else:
            files[path] = target
    expected = sha256(reference_file("Windows", "Boot", "EFI", "bootmgfw.efi"))
    for path in ("EFI/Microsoft/Boot/bootmgfw.efi", "EFI/Boot/bootx64.efi"):
        if path in files:
            same = sha256(open(files[path], "rb").read()) == expected
            print(f"  ESP {path}: {'the image' + chr(39) + 's bootmgfw.efi' if same else 'DIFFERENT'}")
            if not same:
                problem(f"{path} is not the image's Windows\\Boot\\EFI\\bootmgfw.efi")
    if "EFI/Microsoft/Boot/BCD" not in files:
        return
    objects = read_store(files["EFI/Microsoft/Boot/BCD"])
    loaders = check_loader(objects, "\\windows\\system32\\winload.efi",
                           lambda data: contains(data, partitions[windows][3].bytes_le, disk_guid.bytes_le),
                           "Windows partition + disk GUID")
    check_manager(objects, loaders, lambda data: contains(data, partitions[esp][3].bytes_le, disk_guid.bytes_le),
                  "ESP partition + disk GUID")
    if recovery:
        check_recovery(objects, loaders, partitions[recovery], attach(partitions[recovery][0], partitions[recovery][1]),
                       attach(partitions[windows][0], partitions[windows][1]), disk_guid)


def check_mbr():
    table = json.loads(run("sfdisk", "--json", disk))["partitiontable"]
    signature = int(table["id"], 16)
    partitions = [(p["start"], p["size"], bool(p.get("bootable"))) for p in table["partitions"]]
    system = next(((s, n) for s, n, active in partitions if active), None)
    if system is None:
        problem("no active partition on the MBR disk")
        return
    windows = next((s, n) for s, n, active in partitions if not active)
    print(f"  MBR (sfdisk): signature 0x{signature:08x}, active system partition @{system[0]}, Windows @{windows[0]}")
    with open(disk, "rb") as f:
        head = f.read(512 * 2)
    with open("/usr/lib/grub/i386-pc/boot.img", "rb") as f:
        boot = f.read()
    with open("/usr/lib/grub/i386-pc/diskboot.img", "rb") as f:
        diskboot = f.read()
    # 0x66: the drive check's jump, two NOPs on a hard disk (as grub-setup writes it).
    grub = head[0x68:0x1B8] == boot[0x68:0x1B8] and head[512:512 + 0x1F4] == diskboot[:0x1F4]
    print(f"  boot code: {'GRUB boot.img in the MBR, core.img from sector 1' if grub else 'NOT GRUB'}")
    if not grub:
        problem("the MBR does not hold GRUB's boot.img followed by core.img in sector 1")
    system_loop = attach(*system)
    manager = ntfs_file(system_loop, "bootmgr")
    same = manager is not None and sha256(manager) == sha256(reference_file("Windows", "Boot", "PCAT", "bootmgr"))
    print(f"  system partition \\bootmgr: {'the image' + chr(39) + 's PCAT bootmgr' if same else 'MISSING or DIFFERENT'}")
    if not same:
        problem("the active partition's \\bootmgr is not the image's Windows\\Boot\\PCAT\\bootmgr")
    store = ntfs_file(system_loop, "Boot/BCD")
    if store is None:
        problem("the active partition has no \\Boot\\BCD")
        return
    path = os.path.join(work, "BCD")
    with open(path, "wb") as f:
        f.write(store)
    objects = read_store(path)
    key = signature.to_bytes(4, "little")
    loaders = check_loader(objects, "\\windows\\system32\\winload.exe",
                           lambda data: contains(data, key, (windows[0] * 512).to_bytes(8, "little")),
                           "Windows partition by disk signature + offset")
    check_manager(objects, loaders, lambda data: contains(data, key, (system[0] * 512).to_bytes(8, "little")),
                  "system partition by disk signature + offset")


try:
    label = json.loads(run("sfdisk", "--json", disk))["partitiontable"]["label"]
    check_gpt() if label == "gpt" else check_mbr()
finally:
    for loop in loops:
        subprocess.run(["losetup", "-d", loop], capture_output=True)
    subprocess.run(["rm", "-rf", work])
sys.exit(1 if problems else 0)
