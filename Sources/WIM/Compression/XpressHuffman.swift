/// The Huffman code of an XPRESS block and the lookup table that decodes it.
///
/// An XPRESS (LZ77+Huffman, [MS-XCA] 2.1/2.2) block starts with 256 bytes holding 512 four-bit
/// code lengths, one per symbol: symbols 0...255 are literal bytes, 256...511 are match headers.
/// The low nibble of byte `i` is the length of symbol `2i`, the high nibble that of `2i + 1`;
/// 0 means the symbol does not occur. Codes are canonical: shorter codes come first and codes of
/// one length are handed out in symbol order. Bits are read most significant first, so a code's
/// table slots are a contiguous range and no bit reversal is needed.
///
/// The decode table is indexed by the next `rootBits` bits of the stream. Codes of at most
/// `rootBits` bits fill `2^(rootBits - length)` consecutive root entries. Longer codes (up to 15
/// bits) share root entries by their first `rootBits` bits; such an entry points to a subtable
/// indexed by the following bits, just as many as the longest code under that prefix needs.
enum XpressHuffman {
    // Constants are computed properties: a `static let` is a lazily initialized global that
    // the hot loop would reach through an addressor call.
    @inline(__always) static var symbolCount: Int { 512 }
    @inline(__always) static var lengthTableBytes: Int { 256 }
    @inline(__always) static var maxCodeLength: Int { 15 }

    /// 11 bits keep the root table at 8 KiB, well inside L1 next to the output window, and
    /// cover nearly every symbol of real data, while building it stays cheap next to decoding
    /// a 32 KiB chunk.
    @inline(__always) static var rootBits: Int { 11 }
    @inline(__always) static var rootSize: Int { 2048 }

    /// Room for the root table plus every subtable a complete code can ask for. Under one root
    /// prefix the codes form a complete subtree; if its deepest leaf is `m` levels down (m ≤ 4)
    /// the subtree has at least `m + 1` leaves, so a subtable of `2^m` entries costs at least
    /// `m + 1` of the 512 symbols: at most 16/5 entries per symbol, 1639 in all (canonical codes
    /// need far fewer). 2048 is a round bound that the builder also checks.
    @inline(__always) static var tableCapacity: Int { 2048 + 2048 }

    // Table entry layout (UInt32):
    //   bits 0...3   code length in bits (leaf) or subtable index bits (pointer)
    //   bit 15       set for a pointer to a subtable
    //   bits 16...   the symbol (leaf) or the subtable's first index (pointer)
    @inline(__always) static var lengthMask: UInt32 { 0xF }
    @inline(__always) static var subtableFlag: UInt32 { 0x8000 }
    @inline(__always) static var payloadShift: UInt32 { 16 }

    /// Builds the decode table for the 256 packed code lengths at `packedLengths` into `table`
    /// (`tableCapacity` entries). Returns nil on success, or why the lengths are unusable: they
    /// must describe a complete prefix code, otherwise some bit patterns would decode to nothing
    /// (incomplete) or several symbols would share a pattern (over-subscribed).
    static func buildDecodeTable(
        packedLengths: UnsafePointer<UInt8>,
        into table: UnsafeMutablePointer<UInt32>
    ) -> String? {
        // The symbols are handled as four quarters of 128 (64 table bytes each), interleaved:
        // counting and sorting bump counters in memory, and with one set of counters per quarter
        // (and per nibble for the counts) consecutive bumps rarely hit the same counter, so they
        // do not wait on each other. With 4 KiB chunks, building tables is a sizeable share of
        // the decoding time, so this matters.
        withUnsafeTemporaryAllocation(of: UInt16.self, capacity: 8 * 16 + 4 * 16 + 16 + symbolCount) { scratch -> String? in
            guard let scratchBase = scratch.baseAddress else { return "no scratch memory for the Huffman table" }
            let counts = scratchBase                        // [(quarter * 2 + nibble) * 16 + length]
            let nextSlot = scratchBase + 128                // [quarter * 16 + length]
            let countOfLength = scratchBase + 192           // [length]
            let symbolsByCode = scratchBase + 208           // 512 symbols, canonical order first
            counts.initialize(repeating: 0, count: 128)

            for i in 0..<64 {
                let byte0 = packedLengths[i], byte1 = packedLengths[64 &+ i]
                let byte2 = packedLengths[128 &+ i], byte3 = packedLengths[192 &+ i]
                counts[Int(byte0 & 0xF)] &+= 1
                counts[16 &+ Int(byte0 &>> 4)] &+= 1
                counts[32 &+ Int(byte1 & 0xF)] &+= 1
                counts[48 &+ Int(byte1 &>> 4)] &+= 1
                counts[64 &+ Int(byte2 & 0xF)] &+= 1
                counts[80 &+ Int(byte2 &>> 4)] &+= 1
                counts[96 &+ Int(byte3 & 0xF)] &+= 1
                counts[112 &+ Int(byte3 &>> 4)] &+= 1
            }
            for length in 0..<16 {
                var total: UInt16 = 0
                for part in 0..<8 { total &+= counts[part &* 16 &+ length] }
                countOfLength[length] = total
            }

            // Kraft's inequality, exactly: at every depth the codes may use at most the room
            // left over by shorter codes, and a complete code uses all of it at depth 15.
            var unusedCodes = 1
            for length in 1...maxCodeLength {
                unusedCodes = unusedCodes * 2 - Int(countOfLength[length])
                if unusedCodes < 0 {
                    return "the Huffman code lengths over-subscribe the code space (more codes of length \(length) than fit)"
                }
            }
            if unusedCodes != 0 {
                if Int(countOfLength[0]) == symbolCount {
                    return "the Huffman table gives no symbol a code"
                }
                return "the Huffman code lengths do not form a complete prefix code"
            }

            // Counting sort by length, lengths 1...15 first and the uncoded symbols (length 0)
            // last, so every symbol is placed without a branch. Within a length, quarter 0's
            // symbols come first, and each quarter is scanned in symbol order: the result is the
            // canonical order.
            var slot: UInt16 = 0
            for step in 1...16 {
                let length = step & 15 // 1...15, then 0
                for quarter in 0..<4 {
                    nextSlot[quarter &* 16 &+ length] = slot
                    slot &+= counts[quarter &* 32 &+ length] &+ counts[quarter &* 32 &+ 16 &+ length]
                }
            }
            for i in 0..<64 {
                let symbol = UInt16(truncatingIfNeeded: 2 &* i)
                for quarter in 0..<4 {
                    let byte = packedLengths[quarter &* 64 &+ i]
                    let evenCursor = nextSlot + (quarter &* 16 &+ Int(byte & 0xF))
                    symbolsByCode[Int(evenCursor.pointee)] = symbol &+ UInt16(truncatingIfNeeded: quarter &* 128)
                    evenCursor.pointee &+= 1
                    let oddCursor = nextSlot + (quarter &* 16 &+ Int(byte &>> 4))
                    symbolsByCode[Int(oddCursor.pointee)] = symbol &+ UInt16(truncatingIfNeeded: quarter &* 128 &+ 1)
                    oddCursor.pointee &+= 1
                }
            }
            let codedSymbols = symbolCount &- Int(countOfLength[0])

            // Short codes: consecutive root ranges in canonical order.
            var rootSlot = 0
            var sortedIndex = 0
            for length in 1...rootBits {
                let span = 1 &<< (rootBits - length)
                let entryLength = UInt32(length)
                for _ in 0..<Int(countOfLength[length]) {
                    let entry = (UInt32(symbolsByCode[sortedIndex]) &<< payloadShift) | entryLength
                    (table + rootSlot).update(repeating: entry, count: span)
                    rootSlot &+= span
                    sortedIndex &+= 1
                }
            }

            // Long codes: the rest of the root table, one subtable per 11-bit prefix. Measured in
            // units of 2^-15 of the code space, a prefix owns 16 units and a code of length L
            // owns 2^(15-L); canonical order fills each prefix's 16 units exactly because the
            // code is complete.
            let unitsPerPrefix = 1 &<< (maxCodeLength - rootBits)
            var nextSubtable = rootSize
            while sortedIndex < codedSymbols {
                guard rootSlot < rootSize else { return "internal error: long codes overflow the root table" }
                var groupEnd = sortedIndex
                var units = 0
                var deepest = rootBits + 1
                while units < unitsPerPrefix {
                    guard groupEnd < codedSymbols else { return "internal error: incomplete subtable" }
                    deepest = codeLength(of: Int(symbolsByCode[groupEnd]), packedLengths)
                    units &+= 1 &<< (maxCodeLength - deepest)
                    groupEnd &+= 1
                }
                let subtableBits = deepest - rootBits
                let subtableSize = 1 &<< subtableBits
                guard nextSubtable + subtableSize <= tableCapacity else {
                    return "internal error: Huffman subtables exceed their storage"
                }
                table[rootSlot] = (UInt32(nextSubtable) &<< payloadShift) | subtableFlag | UInt32(subtableBits)
                var subSlot = nextSubtable
                while sortedIndex < groupEnd {
                    let symbol = Int(symbolsByCode[sortedIndex])
                    let length = codeLength(of: symbol, packedLengths)
                    let span = 1 &<< (deepest - length)
                    let entry = (UInt32(symbol) &<< payloadShift) | UInt32(length)
                    (table + subSlot).update(repeating: entry, count: span)
                    subSlot &+= span
                    sortedIndex &+= 1
                }
                nextSubtable &+= subtableSize
                rootSlot &+= 1
            }
            return nil
        }
    }

    @inline(__always)
    private static func codeLength(of symbol: Int, _ packedLengths: UnsafePointer<UInt8>) -> Int {
        let byte = packedLengths[symbol &>> 1]
        return Int(symbol & 1 == 0 ? byte & 0xF : byte &>> 4)
    }
}
