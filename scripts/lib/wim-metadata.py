#!/usr/bin/env python3
"""Writes the metadata resources of an uncompressed WIM to OUT-1, OUT-2, ... (fuzzing seeds)."""
import struct
import sys

wim, out = sys.argv[1], sys.argv[2]
data = open(wim, "rb").read()
size_flags, offset, usize = struct.unpack_from("<QQQ", data, 48)
n = 0
for i in range(usize // 50):
    base = offset + 50 * i
    sf, off, us = struct.unpack_from("<QQQ", data, base)
    if (sf >> 56) & 0x02 and not (sf >> 56) & 0x04:
        n += 1
        open(f"{out}-{n}", "wb").write(data[off:off + us])
