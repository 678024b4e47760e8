// Constants of the LZMS format (Microsoft's "LZMS" from the Windows 8 compression API, used by
// WIM solid resources and `--compress=LZMS` WIM/ESD files). Microsoft never published a
// specification; the values here follow the format description in wimlib's documentation and
// source comments, the only public description of it.

/// Format constants shared by the LZMS decoder's parts.
enum LZMSFormat {
    // MARK: Adaptive Huffman codes

    /// Literal bytes: one symbol per byte value.
    static let literalSymbolCount = 256
    /// Match lengths are coded as one of 54 length slots plus extra bits.
    static let lengthSymbolCount = 54
    /// Delta matches have a span of 2^power bytes, power in 0...7.
    static let deltaPowerSymbolCount = 8
    /// The largest number of offset slots any chunk can need (chunks of ~1.1 GB).
    static let maxOffsetSymbolCount = 799
    /// The adaptive code construction (frequencies halved every rebuild) keeps every codeword
    /// at 15 bits or less; the decoder relies on this to read each symbol from one refill.
    static let maxCodewordLength = 15

    /// Every code is rebuilt from its symbol counts after this many symbols were decoded with it.
    static let literalRebuildInterval = 1024
    static let lzOffsetRebuildInterval = 1024
    static let lengthRebuildInterval = 512
    static let deltaOffsetRebuildInterval = 1024
    static let deltaPowerRebuildInterval = 512

    // MARK: Range-coded decisions

    /// Probabilities are n/64: the count of 0 bits among the last 64 bits decoded in a context.
    static let probabilityBits = 6
    /// Before any bit is decoded, each context pretends its last 64 bits were
    /// 0x0000000055555555 (48 zeros), i.e. a probability of 48/64 for a 0.
    static let initialHistory: UInt64 = 0x0000_0000_5555_5555
    static let initialZeroCount: UInt32 = 48

    // MARK: Offsets and lengths

    /// Largest chunk the decoder accepts. wimlib's LZMS code allows chunks up to 2^30 bytes
    /// (WIM solid resources use 64 MiB); positions then fit the x86 filter's 32-bit arithmetic.
    static let maxBufferSize = 1 << 30

    /// Extra-bit counts of the offset slots, as runs (bit count, number of consecutive slots).
    /// Slot bases follow from them: slot 0 starts at offset 1 and each slot covers
    /// 2^extraBits offsets. The last slot (30 extra bits) reaches offset 1,180,427,428.
    static let offsetExtraBitRuns: [(bits: UInt32, slots: Int)] = [
        (0, 8), (2, 9), (3, 7), (4, 10), (5, 15), (6, 15), (7, 20), (8, 20), (9, 30), (10, 33),
        (11, 40), (12, 42), (13, 45), (14, 60), (15, 73), (16, 80), (17, 85), (18, 95), (19, 105),
        (20, 6), (30, 1),
    ]

    /// Extra-bit counts of the 54 length slots, as runs; slot 0 starts at length 1.
    static let lengthExtraBitRuns: [(bits: UInt32, slots: Int)] = [
        (0, 26), (1, 4), (2, 6), (3, 4), (4, 5), (5, 2), (6, 1), (7, 1), (8, 1), (9, 1), (10, 1),
        (16, 1), (30, 1),
    ]

    /// The decoder keeps each slot as one word: base in the low 27 bits (every base is below
    /// 2^27), extra-bit count in the high 5 bits, so one load yields both.
    static let slotBaseMask: UInt32 = (1 << 27) - 1
    static let slotExtraBitsShift: UInt32 = 27

    /// Expands extra-bit runs into packed slot words (see `slotBaseMask`).
    static func packedSlots(_ runs: [(bits: UInt32, slots: Int)]) -> [UInt32] {
        var slots: [UInt32] = []
        var base: UInt32 = 1
        for run in runs {
            for _ in 0..<run.slots {
                slots.append(base | run.bits << slotExtraBitsShift)
                base &+= 1 << run.bits
            }
        }
        return slots
    }

    /// How many offset slots a chunk of `outputSize` bytes uses: enough to reach offset
    /// `outputSize - 1`, the farthest any match can look back. This is the size of both offset
    /// alphabets, so it shapes their Huffman codes and must match the compressor's choice.
    static func offsetSlotCount(forOutputSize outputSize: Int, packedOffsetSlots: UnsafePointer<UInt32>) -> Int {
        if outputSize < 2 { return 0 }
        let farthest = outputSize - 1
        var count = 0
        while count < maxOffsetSymbolCount && Int(packedOffsetSlots[count] & slotBaseMask) <= farthest {
            count += 1
        }
        return count
    }

    // MARK: x86 filter

    /// The filter only translates an instruction's address when the previous "likely x86"
    /// instruction ended at most this many bytes earlier (half of it for E8 calls).
    static let x86MaxTranslationDistance = 1023
    /// Two instructions referencing the same 16-bit target within this window mark code.
    static let x86IdentificationWindow = 65535
    /// No instruction is considered in the last 16 bytes of the chunk.
    static let x86TailExclusion = 16
}
