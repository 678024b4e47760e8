#!/usr/bin/env python3
"""Writes an empty registry hive (regf header, one hbin holding the root key and its security
cell) that hivexsh can then open with -w and fill: `empty-hive.py OUT [ROOTNAME]`."""
import struct
import sys
import time

out = sys.argv[1]
root_name = (sys.argv[2] if len(sys.argv) > 2 else "ROOT").encode("ascii")
filetime = int((time.time() + 11644473600) * 10_000_000)

# Security descriptor (self-relative): owner Administrators, group SYSTEM, DACL granting
# Everyone full control.
def sid(*parts):
    authority, *subs = parts
    return struct.pack("<BB", 1, len(subs)) + authority.to_bytes(6, "big") + b"".join(struct.pack("<I", s) for s in subs)
admins, system, everyone = sid(5, 32, 544), sid(5, 18), sid(1, 0)
ace = struct.pack("<BBHI", 0, 0x02, 8 + len(everyone), 0x000F003F) + everyone  # allowed, container inherit, KEY_ALL_ACCESS
acl = struct.pack("<BBHHH", 2, 0, 8 + len(ace), 1, 0) + ace
header_len = 20
owner_off = header_len
group_off = owner_off + len(admins)
dacl_off = group_off + len(system)
sd = struct.pack("<BBHIIII", 1, 0, 0x8004, owner_off, group_off, 0, dacl_off) + admins + system + acl

def cell(payload):
    size = (4 + len(payload) + 7) & ~7
    return struct.pack("<i", -size) + payload + b"\0" * (size - 4 - len(payload))

nk_offset = 0x20
nk_payload_len = 0x4C + len(root_name)
nk_size = (4 + nk_payload_len + 7) & ~7
sk_offset = nk_offset + nk_size
nk = (b"nk" + struct.pack("<H", 0x2C) + struct.pack("<Q", filetime) + struct.pack("<I", 0)
      + struct.pack("<I", 0xFFFFFFFF)                # parent
      + struct.pack("<II", 0, 0)                      # subkeys, volatile subkeys
      + struct.pack("<II", 0xFFFFFFFF, 0xFFFFFFFF)    # subkey lists
      + struct.pack("<II", 0, 0xFFFFFFFF)             # values, value list
      + struct.pack("<II", sk_offset, 0xFFFFFFFF)     # security, class name
      + struct.pack("<IIIII", 0, 0, 0, 0, 0)          # max name lengths, work var
      + struct.pack("<HH", len(root_name), 0) + root_name)
assert len(nk) == nk_payload_len
sk = b"sk" + struct.pack("<HIIII", 0, sk_offset, sk_offset, 1, len(sd)) + sd
cells = cell(nk) + cell(sk)
hbin_size = 4096
free = hbin_size - 0x20 - len(cells)
hbin = (b"hbin" + struct.pack("<III", 0, hbin_size, 0) + struct.pack("<I", 0) + struct.pack("<Q", filetime)
        + struct.pack("<I", 0)) + cells + struct.pack("<i", free) + b"\0" * (free - 4)
assert len(hbin) == hbin_size

header = bytearray(4096)
struct.pack_into("<4sIIQIIIIIII", header, 0, b"regf", 1, 1, filetime, 1, 5, 0, 1, nk_offset, hbin_size, 1)
name16 = ("\\??\\C:\\Windows\\System32\\config\\" + root_name.decode())[-31:].encode("utf-16-le")
header[0x30:0x30 + len(name16)] = name16
checksum = 0
for i in range(0, 0x1FC, 4):
    checksum ^= struct.unpack_from("<I", header, i)[0]
struct.pack_into("<I", header, 0x1FC, checksum)
with open(out, "wb") as f:
    f.write(bytes(header) + hbin)
