// LZMS's x86 filter. Before compressing, the compressor rewrites the 32-bit relative
// addresses of some x86 instructions (call, RIP-relative lea/mov, ...) as absolute positions
// in the chunk, because the same target then produces the same bytes at every call site and
// LZ matches find them. The decompressor runs the same scan over its output and turns them back.
//
// The filter guesses which bytes are code: a candidate instruction whose 16-bit target was
// also referenced by a candidate less than 64 KiB earlier marks the data as x86, and only
// candidates within 1023 bytes (511 for E8 calls) of the last such mark are translated. The
// bytes behind every decision are the same on both sides (targets are taken from relative
// addresses, and no opcode test reaches into an operand the other side rewrote), so the
// guesses agree without any side information.

/// Undoes the x86 translation of a decoded chunk. Keeps the 64K-entry table of last target
/// uses between chunks so a chunk does not pay for clearing 256 KiB.
struct LZMSX86Filter {
    /// For each 16-bit target, where its last reference ended, as `epoch + position`. Entries
    /// from earlier chunks are older than any window because `epoch` jumps past them.
    private let lastTargetUse: UnsafeMutablePointer<Int32>
    private var epoch: Int

    static let tableEntries = 1 << 16

    init(table: UnsafeMutablePointer<Int32>) {
        lastTargetUse = table
        table.update(repeating: 0, count: LZMSX86Filter.tableEntries)
        epoch = LZMSFormat.x86IdentificationWindow + 1
    }

    /// Restores the original relative addresses in `data[0..<count]`.
    mutating func undo(_ data: UnsafeMutablePointer<UInt8>, count: Int) {
        let tail = LZMSFormat.x86TailExclusion
        guard count > tail + 1 else { return }

        // Positions go into 32 bits; start the epochs over well before they could overflow.
        let window = LZMSFormat.x86IdentificationWindow
        if epoch + count + window + 1 > Int(Int32.max) {
            lastTargetUse.update(repeating: 0, count: LZMSX86Filter.tableEntries)
            epoch = window + 1
        }
        defer { epoch += count + window + 1 }

        let raw = UnsafeMutableRawPointer(data)
        // Candidates start at 1 (the first byte never counts) and before `limit`; the longest
        // candidate reads 7 bytes past its start, which stays inside the chunk.
        let limit = count - tail
        var lastX86End = -LZMSFormat.x86MaxTranslationDistance - 1
        var i = 1
        while true {
            i = LZMSX86Filter.nextCandidate(data, from: i, limit: limit, count: count)
            if i >= limit { break }

            let operandOffset: Int, maxDistance: Int
            switch Self.instruction(data, at: i) {
            case .none:
                i += 1
                continue
            case .skip(let bytes):
                i += bytes
                continue
            case let .translate(offset, distance):
                (operandOffset, maxDistance) = (offset, distance)
            }

            let operand = i + operandOffset
            if i - lastX86End <= maxDistance {
                let absolute = raw.loadUnaligned(fromByteOffset: operand, as: UInt32.self).littleEndian
                raw.storeBytes(of: (absolute &- UInt32(truncatingIfNeeded: i)).littleEndian,
                               toByteOffset: operand, as: UInt32.self)
            }
            // The target as the compressor saw it: position plus the relative address.
            let relative16 = Int(raw.loadUnaligned(fromByteOffset: operand, as: UInt16.self).littleEndian)
            let target = (i + relative16) & 0xFFFF
            let end = operand + 3
            let stamped = epoch + end
            if stamped - Int(lastTargetUse[target]) <= window {
                lastX86End = end
            }
            lastTargetUse[target] = Int32(truncatingIfNeeded: stamped)
            i = operand + 4
        }
    }

    /// What the format does with the bytes at a candidate position.
    enum Instruction {
        /// Not an instruction the format translates: move on by one byte.
        case none
        /// A jump (E9): never translated, its bytes skipped.
        case skip(Int)
        /// A 32-bit operand `operandOffset` bytes in, translated when the last translated
        /// instruction ended at most `maxDistance` bytes before.
        case translate(operandOffset: Int, maxDistance: Int)
    }

    /// Classifies the candidate at `i` (the encoder and the decoder must agree byte for byte).
    /// Reads up to 3 bytes past `i`, which stay inside the chunk below `limit`.
    @inline(__always)
    static func instruction(_ data: UnsafeMutablePointer<UInt8>, at i: Int) -> Instruction {
        let opcode = data[i]
        switch opcode {
        case 0xE8:
            // Call: so common in non-code data that it needs a closer mark.
            return .translate(operandOffset: 1, maxDistance: LZMSFormat.x86MaxTranslationDistance >> 1)
        case 0xE9:
            // Jump: never translated (too many false positives), but its operand is skipped.
            return .skip(5)
        case 0xFF:
            // Indirect call through a RIP-relative pointer: FF 15 disp32.
            return data[i + 1] == 0x15 ? .translate(operandOffset: 2, maxDistance: LZMSFormat.x86MaxTranslationDistance) : .none
        case 0xF0:
            // lock add dword [rip+disp32], imm8: F0 83 05 disp32.
            return data[i + 1] == 0x83 && data[i + 2] == 0x05 ? .translate(operandOffset: 3, maxDistance: LZMSFormat.x86MaxTranslationDistance) : .none
        default:
            // 0x48/0x4C: REX.W prefix of lea/mov reg, [rip+disp32]. The format tests only
            // the r/m bits of ModR/M (a quirk that must be kept), plus two more conditions
            // for mov.
            let modrm = data[i + 2]
            guard modrm & 0x07 == 0x05 else { return .none }
            let op = data[i + 1]
            if op == 0x8D || (op == 0x8B && opcode & 0x04 == 0 && modrm & 0xF0 == 0) {
                return .translate(operandOffset: 3, maxDistance: LZMSFormat.x86MaxTranslationDistance)
            }
            return .none
        }
    }

    /// The first position at or after `from` holding a byte that may start a translated
    /// instruction (48, 4C, E8, E9, F0, FF), or a position >= `limit`.
    ///
    /// Eight bytes at a time: each test maps matching bytes to zero (48/4C differ in one bit,
    /// as do E8/E9) and the classic "has a zero byte" expression flags them. A flag can be
    /// spurious only above a real zero byte, so the lowest flag is always a real candidate.
    @inline(__always)
    static func nextCandidate(_ data: UnsafeMutablePointer<UInt8>, from start: Int, limit: Int, count: Int) -> Int {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let highs: UInt64 = 0x8080_8080_8080_8080
        var i = start
        while i < limit && i + 8 <= count {
            let word = UnsafeRawPointer(data + i).loadUnaligned(as: UInt64.self).littleEndian
            let rex = (word & ~(ones &* 0x04)) ^ (ones &* 0x48)
            let call = (word & ~ones) ^ (ones &* 0xE8)
            let lock = word ^ (ones &* 0xF0)
            let group = ~word
            var flags = ((rex &- ones) & ~rex)
            flags |= ((call &- ones) & ~call)
            flags |= ((lock &- ones) & ~lock)
            flags |= ((group &- ones) & ~group)
            flags &= highs
            if flags != 0 {
                return i + flags.trailingZeroBitCount >> 3
            }
            i += 8
        }
        // Only reached when fewer than 8 bytes remain before the end of the chunk; since
        // limit = count - 16 that never leaves a candidate unexamined, but stay exact anyway.
        while i < limit {
            switch data[i] {
            case 0x48, 0x4C, 0xE8, 0xE9, 0xF0, 0xFF: return i
            default: i += 1
            }
        }
        return i
    }
}
