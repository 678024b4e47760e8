#!/usr/bin/env python3
"""Generates a small fake Windows installation tree for the lab:
  make-tree.py DIR new|old [STANDINS]
`new` is the image the lab deploys (a few MB: registry hives made with hivexsh, boot files
under Windows\\Boot\\EFI, PCAT and Fonts, Program Files, text and binary files); `old` is the
installation a refresh replaces (an older build, other programs). Contents are seeded, so two
runs make the same tree. STANDINS (needed for `new`) is the folder standins/build filled: its
bootmgfw.efi and bootmgr, stand-in boot managers that print a marker on the serial console,
become Windows\\Boot\\EFI\\bootmgfw.efi and Windows\\Boot\\PCAT\\bootmgr, so the lab can see the
firmware start what Imprint wrote."""
import os
import random
import subprocess
import sys

root, flavour = sys.argv[1], sys.argv[2]
standins = sys.argv[3] if len(sys.argv) > 3 else None
if flavour == "new" and not standins:
    sys.exit("make-tree.py: `new` needs STANDINS, the folder holding bootmgfw.efi and bootmgr (standins/build)")
here = os.path.dirname(os.path.abspath(__file__))
rng = random.Random("imprint-lab-" + flavour)
build = "22631" if flavour == "new" else "19045"
product = "Windows 11 Pro (Imprint lab)" if flavour == "new" else "Windows 10 Pro (Imprint lab, old)"


def write(rel, data):
    path = os.path.join(root, *rel.split("\\"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def binary(size, magic=b""):
    return magic + rng.randbytes(size - len(magic))


def pe(size):
    # An MZ header pointing at a PE signature, then noise: enough for `file` to call it a PE.
    head = bytearray(b"MZ" + bytes(0x3A) + (0x80).to_bytes(4, "little") + bytes(0x40) + b"PE\0\0")
    return bytes(head) + rng.randbytes(size - len(head))


def standin(name, filler):
    # The stand-in's bytes; the filler is drawn all the same, so the seeded contents of the
    # files written after it stay what they were before the stand-ins.
    del filler
    with open(os.path.join(standins, name), "rb") as f:
        return f.read()


def hive(rel, name, script):
    path = os.path.join(root, *rel.split("\\"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    subprocess.run([sys.executable, os.path.join(here, "empty-hive.py"), path, name], check=True)
    subprocess.run(["hivexsh", "-w", path], input=script + "commit\n", text=True, check=True,
                   stdout=subprocess.DEVNULL)


hive("Windows\\System32\\config\\SOFTWARE", "SOFTWARE",
     "add Microsoft\ncd Microsoft\nadd Windows NT\ncd Windows NT\nadd CurrentVersion\ncd CurrentVersion\n"
     f"setval 4\nProductName\nstring:{product}\nCurrentBuild\nstring:{build}\nEditionID\nstring:Professional\n"
     "InstallationType\nstring:Client\n")
hive("Windows\\System32\\config\\SYSTEM", "SYSTEM",
     "add Select\ncd Select\nsetval 2\nCurrent\ndword:1\nDefault\ndword:1\ncd \\\n"
     "add ControlSet001\ncd ControlSet001\nadd Control\ncd Control\nadd ComputerName\ncd ComputerName\n"
     "add ComputerName\ncd ComputerName\nsetval 1\nComputerName\nstring:MINWINPC\n")
for name in ("DEFAULT", "SAM", "SECURITY"):
    hive(f"Windows\\System32\\config\\{name}", name, "")

write("Windows\\System32\\ntoskrnl.exe", pe(900_000 if flavour == "new" else 700_000))
write("Windows\\System32\\hal.dll", pe(120_000))
write("Windows\\System32\\winload.efi", pe(300_000))
write("Windows\\System32\\winload.exe", pe(280_000))
write("Windows\\System32\\drivers\\disk.sys", pe(40_000))
write("Windows\\System32\\drivers\\etc\\hosts", "# Copyright (c) 1993-2009 Microsoft Corp.\n127.0.0.1 localhost\n")
write("Windows\\System32\\imprint-lab-build.txt", f"{product}\nbuild {build}\n")
write("Windows\\win.ini", "; for 16-bit app support\n[fonts]\n[extensions]\n[mci extensions]\n[files]\n[Mail]\nMAPI=1\n")
write("Windows\\explorer.exe", pe(400_000))
if flavour == "new":
    write("Windows\\Boot\\EFI\\bootmgfw.efi", standin("bootmgfw.efi", pe(1_400_000)))
    write("Windows\\Boot\\EFI\\bootmgr.efi", pe(1_300_000))
    write("Windows\\Boot\\EFI\\memtest.efi", pe(800_000))
    write("Windows\\Boot\\EFI\\boot.stl", binary(12_000))
    write("Windows\\Boot\\EFI\\en-US\\bootmgfw.efi.mui", pe(80_000))
    write("Windows\\Boot\\EFI\\en-US\\bootmgr.efi.mui", pe(80_000))
    write("Windows\\Boot\\PCAT\\bootmgr", standin("bootmgr", binary(400_000)))
    write("Windows\\Boot\\PCAT\\memtest.exe", pe(480_000))
    write("Windows\\Boot\\PCAT\\en-US\\bootmgr.exe.mui", pe(70_000))
    write("Windows\\Boot\\Fonts\\segmono_boot.ttf", binary(40_000, b"\0\1\0\0"))
    write("Windows\\Boot\\Fonts\\segoe_slboot.ttf", binary(90_000, b"\0\1\0\0"))
    write("Windows\\Boot\\Fonts\\wgl4_boot.ttf", binary(45_000, b"\0\1\0\0"))
    write("Windows\\Boot\\DVD\\EFI\\BCD", binary(16_384, b"regf"))
    write("Program Files\\Imprint Lab App\\labapp.exe", pe(250_000))
    write("Program Files\\Imprint Lab App\\README.txt", "Imprint lab application, version 2.\n" * 40)
    write("Program Files\\Common Files\\lab\\shared.dll", pe(60_000))
    write("ProgramData\\Imprint Lab\\settings.ini", "[lab]\nimage=new\n")
    write("Users\\Default\\NTUSER.DAT", binary(262_144, b"regf"))
    write("Users\\Public\\Documents\\desktop.ini", "[.ShellClassInfo]\nLocalizedResourceName=@%SystemRoot%\\system32\\shell32.dll,-21801\n")
    # Compressible text, so LZX chunks of several kinds are in the WIM.
    words = ["imprint", "deploy", "windows", "lab", "volume", "driver", "image", "sequence"]
    write("Windows\\Logs\\CBS\\CBS.log", "".join(f"2026-11-30 00:{i % 60:02d}:00, Info CBS {' '.join(rng.choice(words) for _ in range(12))}\n"
                                                 for i in range(20_000)))
    write("Windows\\System32\\empty.dat", b"")
    # Windows RE, as an installed Windows keeps it: Setup copies both to the recovery partition.
    write("Windows\\System32\\Recovery\\Winre.wim", binary(2_500_000, b"MSWIM\0\0\0"))
    write("Windows\\Boot\\DVD\\EFI\\boot.sdi", binary(300_000, b"$SDI0001"))
else:
    write("Program Files\\Old App\\oldapp.exe", pe(200_000))
    write("Program Files (x86)\\Old App x86\\old32.exe", pe(100_000))
    write("ProgramData\\Imprint Lab\\settings.ini", "[lab]\nimage=old\n")
    write("Windows\\Temp\\old-only.tmp", binary(50_000))
