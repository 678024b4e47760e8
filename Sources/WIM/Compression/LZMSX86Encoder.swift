// The compressor's side of LZMS's x86 filter: before matching, rewrite the 32-bit relative
// addresses of likely x86 instructions as absolute positions in the chunk. The scan, its
// candidate instructions and its "is this code" guess are the decoder's (see LZMSX86Filter.swift
// for the format facts); only the direction of the rewrite differs. The guess is computed from
// the relative (original) addresses on both sides, so the decoder, which restores each address
// before it looks at it, makes the same guesses.

/// Applies the x86 translation to a chunk about to be compressed. Keeps its 64K-entry table
/// between chunks (epochs keep earlier chunks' entries out of every window).
struct LZMSX86Encoder {
    private var lastTargetUse: [Int32]
    private var epoch: Int

    init() {
        lastTargetUse = [Int32](repeating: 0, count: LZMSX86Filter.tableEntries)
        epoch = LZMSFormat.x86IdentificationWindow + 1
    }

    /// Translates `data[0..<count]` in place.
    mutating func apply(_ data: UnsafeMutablePointer<UInt8>, count: Int) {
        let tail = LZMSFormat.x86TailExclusion
        guard count > tail + 1 else { return }
        let window = LZMSFormat.x86IdentificationWindow
        if epoch + count + window + 1 > Int(Int32.max) {
            for i in 0..<lastTargetUse.count { lastTargetUse[i] = 0 }
            epoch = window + 1
        }
        let epoch = self.epoch
        defer { self.epoch += count + window + 1 }

        lastTargetUse.withUnsafeMutableBufferPointer { lastTargetUse in
            let raw = UnsafeMutableRawPointer(data)
            let limit = count - tail
            var lastX86End = -LZMSFormat.x86MaxTranslationDistance - 1
            var i = 1
            while true {
                i = LZMSX86Filter.nextCandidate(data, from: i, limit: limit, count: count)
                if i >= limit { break }

                let operandOffset: Int, maxDistance: Int
                switch LZMSX86Filter.instruction(data, at: i) {
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
                let relative = raw.loadUnaligned(fromByteOffset: operand, as: UInt32.self).littleEndian
                if i - lastX86End <= maxDistance {
                    raw.storeBytes(of: (relative &+ UInt32(truncatingIfNeeded: i)).littleEndian,
                                   toByteOffset: operand, as: UInt32.self)
                }
                let target = (i + Int(relative & 0xFFFF)) & 0xFFFF
                let end = operand + 3
                let stamped = epoch + end
                if stamped - Int(lastTargetUse[target]) <= window {
                    lastX86End = end
                }
                lastTargetUse[target] = Int32(truncatingIfNeeded: stamped)
                i = operand + 4
            }
        }
    }
}
