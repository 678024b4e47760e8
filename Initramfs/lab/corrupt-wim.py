#!/usr/bin/env python3
"""Copies a WIM with bytes flipped in the middle of its largest file resource (not metadata),
so a reader fails on that blob's data (decompression or SHA-1) in the middle of an apply:
  corrupt-wim.py IN.wim OUT.wim"""
import shutil
import struct
import sys

src, dst = sys.argv[1], sys.argv[2]
data = bytearray(open(src, "rb").read())
size_flags, offset, usize = struct.unpack_from("<QQQ", data, 48)  # the blob table's resource header
if (size_flags >> 56) & 0x04:
    sys.exit("corrupt-wim.py: the blob table is compressed; capture without --solid")
best = None
for base in range(offset, offset + usize, 50):
    sf, off, orig = struct.unpack_from("<QQQ", data, base)
    stored, flags = sf & ((1 << 56) - 1), sf >> 56
    if flags & 0x02:  # metadata
        continue
    if best is None or stored > best[1]:
        best = (off, stored)
if best is None:
    sys.exit("corrupt-wim.py: no file resource found")
off, stored = best
middle = off + stored // 2
for i in range(64):
    data[middle + i] ^= 0xA5
open(dst, "wb").write(data)
print(f"flipped 64 bytes at offset {middle} in the resource at {off} ({stored} bytes stored)")
