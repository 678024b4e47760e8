#!/usr/bin/env python3
"""Time from power-on to the agent running, from a lab machine's serial console.

    boot-times.py watch CONSOLE TIMES PID   # until PID ends: each console line with the seconds
                                            # since the watch began (started with QEMU: power-on)
    boot-times.py report TIMES [--json]     # firmware, boot loader, kernel and initrd, agent start

The markers, in the order they appear on the console (OVMF's boot manager, the kernel, /init):
  power-on -> "BdsDxe: starting" (OVMF starts the network boot program: shim, which its own PXE
              or its HTTP Boot fetched, or iPXE, which its HTTP Boot fetched; or the stick's shim) or iPXE's banner (the NIC's iPXE ROM starts) or
              GRUB's menu (SeaBIOS booted the stick: SeaBIOS writes nothing on the serial port,
              so this includes GRUB's loading of its core image and grub.cfg) = firmware
  -> "EFI stub:" or "Linux version" (the kernel runs; iPXE, or shim and GRUB, fetched it and the
              initrd, or GRUB read them from the stick after its menu's 3 s) = boot loader
  -> "imprint [" (/init's first line: the kernel unpacked the initrd) = kernel and initrd
  -> "running: imprint agent" (/init has loaded drivers and got DHCP), or "running: imprint media
              menu" (the stick's menu, mounted from the stick) = agent start
"""
import json
import os
import re
import sys
import time

ESCAPES = re.compile(r"\x1b\[[0-9;?]*[a-zA-Z]|\x1b[()][0-9A-Za-z]|\x1bc")
MARKERS = [
    ("firmware", re.compile(r"BdsDxe: starting|Open Source Network Boot Firmware|GNU GRUB +version")),
    ("boot loader", re.compile(r"EFI stub:|Linux version")),
    ("kernel and initrd", re.compile(r"^imprint \[")),
    ("agent start", re.compile(r"running: imprint (agent|media menu)")),
]


def alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def watch(console, times, pid):
    started = time.monotonic()
    position, pending = 0, b""
    with open(times, "w", encoding="utf-8") as out:
        while True:
            running = alive(pid)
            try:
                with open(console, "rb") as f:
                    f.seek(position)
                    data = f.read()
            except FileNotFoundError:
                data = b""
            position += len(data)
            pending += data
            now = time.monotonic() - started
            # The firmware redraws lines with carriage returns: either ends a line here.
            *lines, pending = re.split(rb"\r\n|\n|\r", pending)
            for line in lines:
                text = ESCAPES.sub("", line.decode("utf-8", "replace")).strip()
                if text:
                    out.write(f"{now:.2f}\t{text}\n")
            out.flush()
            if not running:
                return
            time.sleep(0.1)


def phases(times):
    seen = []
    with open(times, encoding="utf-8") as f:
        lines = [line.rstrip("\n").split("\t", 1) for line in f if "\t" in line]
    index = 0
    for name, marker in MARKERS:
        for i in range(index, len(lines)):
            if marker.search(lines[i][1]):
                seen.append((name, float(lines[i][0])))
                index = i
                break
        else:
            break
    result, previous = [], 0.0
    for name, at in seen:
        result.append({"phase": name, "seconds": round(at - previous, 1), "at": round(at, 1)})
        previous = at
    return result


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "watch":
        watch(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) in (3, 4) and sys.argv[1] == "report":
        result = phases(sys.argv[2])
        if sys.argv[3:] == ["--json"]:
            print(json.dumps(result))
            return
        if len(result) < len(MARKERS):
            missing = MARKERS[len(result)][0]
            print(f"  boot times: the console never reached the end of \"{missing}\" ({sys.argv[2]})")
        if result:
            parts = ", ".join(f"{p['phase']} {p['seconds']} s" for p in result)
            print(f"  power-on to the agent: {result[-1]['at']} s ({parts})" if len(result) == len(MARKERS)
                  else f"  boot times so far: {parts}")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
