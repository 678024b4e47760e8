/// Canonical Huffman decode tables for the LZX decoder.
///
/// LZX transmits each prefix code only as a list of codeword lengths; the codewords themselves are
/// the canonical ones (shorter codes first, equal lengths in symbol order), read most significant
/// bit first. A table of `2^tableBits` entries is indexed by the next `tableBits` bits of the
/// stream: a codeword of length `n <= tableBits` owns `2^(tableBits - n)` consecutive entries.
/// Longer codewords share a direct entry per `tableBits`-bit prefix that points at a subtable
/// indexed by the following bits, so every symbol costs one or two loads and never a bit-by-bit
/// tree walk.
///
/// Entry layout (32 bits):
/// - leaf: `symbol << 8 | codewordLength` — the length is the total number of bits to consume,
///   also for leaves inside subtables, so the caller consumes bits the same way in both cases;
/// - subtable pointer: `subtableStart << 8 | subtableFlag | subtableIndexBits`.
///
/// The entry constants and the lookup itself live in LZXDecompressor.swift, beside the decode
/// loop, so that they inline even in a build that compiles files separately.
enum LZXHuffman {
    /// How the codeword lengths turned out.
    enum BuildResult {
        /// A complete prefix code; the table decodes every bit pattern.
        case complete
        /// No symbol has a codeword; the table holds `emptyCodeSymbol` everywhere.
        case empty
        /// More codewords than the code space holds (Kraft sum above 1).
        case overSubscribed
        /// Codewords that leave part of the code space unused (Kraft sum below 1, but not empty).
        /// wimlib and Microsoft's decoder reject these too, so no valid stream contains one.
        case incomplete
    }

    /// Entries a table may need: the direct part plus the subtables. Every subtable holds at least
    /// two codewords (a one-codeword subtree would be a leaf of the direct part), so there are at
    /// most `symbolCount / 2` of them, each at most `2^(maxCodewordLength - tableBits)` entries.
    static func capacity(tableBits: Int, symbolCount: Int, maxCodewordLength: Int) -> Int {
        (1 << tableBits) + (symbolCount / 2) * (1 << max(0, maxCodewordLength - tableBits))
    }

    /// Builds the decode table for the code whose codeword lengths are `lengths[0..<symbolCount]`.
    ///
    /// `counts` needs `2 * (maxCodewordLength + 1)` scratch integers and `sortedSymbols`
    /// `symbolCount` scratch slots. Lengths above `maxCodewordLength` cannot come out of the
    /// LZX length decoders; they are still reported as over-subscribed rather than trusted, since
    /// the table indexing depends on them.
    static func build(
        table: UnsafeMutablePointer<UInt32>,
        capacity: Int,
        tableBits: Int,
        lengths: UnsafePointer<UInt8>,
        symbolCount: Int,
        maxCodewordLength maxLength: Int,
        counts: UnsafeMutablePointer<Int>,
        sortedSymbols: UnsafeMutablePointer<UInt16>
    ) -> BuildResult {
        let directSize = 1 << tableBits
        counts.update(repeating: 0, count: maxLength + 1)
        for symbol in 0..<symbolCount {
            let length = Int(lengths[symbol])
            if length > maxLength { return .overSubscribed }
            counts[length] += 1
        }

        // Kraft sum, counted in units of the smallest codeword's share of the code space.
        var unusedCodeSpace = 1
        for length in 1...maxLength {
            unusedCodeSpace = (unusedCodeSpace << 1) - counts[length]
            if unusedCodeSpace < 0 { return .overSubscribed }
        }
        if unusedCodeSpace != 0 {
            guard counts[0] == symbolCount else { return .incomplete }
            table.update(repeating: emptyCodeSymbol << 8, count: directSize)
            return .empty
        }

        // Sort the used symbols by (codeword length, symbol): that is the order in which the
        // canonical codewords are assigned, hence the order of their table entries.
        let nextSlot = counts + (maxLength + 1)
        nextSlot[1] = 0
        if maxLength > 1 {
            for length in 1..<maxLength { nextSlot[length + 1] = nextSlot[length] + counts[length] }
        }
        for symbol in 0..<symbolCount {
            let length = Int(lengths[symbol])
            if length != 0 {
                sortedSymbols[nextSlot[length]] = UInt16(truncatingIfNeeded: symbol)
                nextSlot[length] += 1
            }
        }

        // Direct entries: canonical codewords, left-justified to `tableBits`, tile the table in
        // order from index 0, so each one simply fills the next run of entries.
        var tablePosition = 0
        var sortedIndex = 0
        var length = 1
        while length <= min(tableBits, maxLength) {
            let span = 1 << (tableBits - length)
            var remaining = counts[length]
            while remaining > 0 {
                let entry = UInt32(sortedSymbols[sortedIndex]) << 8 | UInt32(length)
                (table + tablePosition).update(repeating: entry, count: span)
                tablePosition += span
                sortedIndex += 1
                remaining -= 1
            }
            length += 1
        }
        if tablePosition == directSize { return .complete }

        // The remaining direct entries are prefixes of longer codewords. Each gets a subtable
        // sized (as zlib does) to the fewest index bits whose codewords exactly fill it.
        var nextFree = directSize
        while tablePosition < directSize {
            while length <= maxLength && counts[length] == 0 { length += 1 }
            if length > maxLength { return .incomplete }

            var indexBits = length - tableBits
            var room = 1 << indexBits
            var probe = length
            while true {
                room -= counts[probe]
                if room <= 0 || probe == maxLength { break }
                probe += 1
                indexBits += 1
                room <<= 1
            }
            let subtableSize = 1 << indexBits
            if nextFree + subtableSize > capacity { return .overSubscribed }
            table[tablePosition] = UInt32(nextFree) << 8 | subtableFlag | UInt32(indexBits)
            tablePosition += 1

            var subtablePosition = 0
            while subtablePosition < subtableSize {
                while length <= maxLength && counts[length] == 0 { length += 1 }
                // A complete code always fills the subtable exactly with codewords no longer than
                // `tableBits + indexBits`; anything else means the lengths were not complete.
                guard length <= tableBits + indexBits else { return .incomplete }
                let span = 1 << (tableBits + indexBits - length)
                guard subtablePosition + span <= subtableSize else { return .incomplete }
                let entry = UInt32(sortedSymbols[sortedIndex]) << 8 | UInt32(length)
                (table + nextFree + subtablePosition).update(repeating: entry, count: span)
                subtablePosition += span
                sortedIndex += 1
                counts[length] -= 1
            }
            nextFree += subtableSize
        }
        return .complete
    }
}
