/// Decoder for XPRESS as WIM files use it: the "LZ77+Huffman" algorithm of [MS-XCA].
///
/// Format, per block of 65536 output bytes (a WIM chunk is at most 64 KiB, so it is one block):
/// a 256-byte table of 4-bit code lengths (see `XpressHuffman`), then a bit stream of 16-bit
/// little-endian words read most significant bit first. Each Huffman symbol is a literal byte
/// (0...255) or a match header (256...511): `header & 15` is the length minus 3 (15 means "read
/// more length from the byte stream") and `header >> 4` is how many offset bits follow; the offset
/// is `1 << bits | nextBits(bits)`. Long lengths are plain bytes taken from the input at the
/// position the reference decoder's word reader has reached, so they sit between bit-stream
/// words. A match that runs past the block's 65536 bytes simply finishes; the next block (table
/// and bit stream) starts where the reference decoder's byte cursor stands after the last item.
///
/// Speed: a 64-bit bit buffer refilled with one 8-byte load (four words) and no branch on the bit
/// count, an 11-bit lookup table with small subtables, and 8-byte match copies. The reference
/// decoder reads only one word ahead, and the long-length bytes are read at *its* cursor, so a
/// long length rewinds: the words this decoder read beyond the reference cursor are dropped and
/// re-read after the length bytes. About one match in ten has a long length; the common one-byte
/// form is handled inline, the rest out of line.
///
/// Safety: every read is checked against the input (an 8-byte load only when 8 bytes remain; near
/// the end words are read one by one and missing words read as zero, which is an error as soon
/// as a bit of them is actually used), every write against the output, every match offset
/// against the bytes already written in this chunk.
public struct XpressDecompressor: ChunkDecompressor {
    public var format: CompressionFormat { .xpress }

    /// Output bytes covered by one Huffman table.
    @inline(__always) static var blockSize: Int { 65536 }

    /// The decode table, kept between chunks so decoding allocates nothing. An array rather than
    /// a raw allocation so that copies of the struct never share it.
    private var decodeTable: [UInt32]

    public init() {
        decodeTable = [UInt32](repeating: 0, count: XpressHuffman.tableCapacity)
    }

    public mutating func decompress(
        _ input: UnsafeRawBufferPointer,
        into output: UnsafeMutableRawBufferPointer
    ) throws(DecompressionError) {
        guard output.count > 0, let outputBase = output.baseAddress else { return }
        guard let inputBase = input.baseAddress, input.count >= XpressHuffman.lengthTableBytes else {
            throw DecompressionError(.xpress, "the input (\(input.count) bytes) is shorter than the 256-byte Huffman table", offset: 0)
        }
        let failure: DecompressionError? = decodeTable.withUnsafeMutableBufferPointer { table in
            guard let tableBase = table.baseAddress else {
                return DecompressionError(.xpress, "no decode table storage", offset: 0)
            }
            do throws(DecompressionError) {
                try Self.decodeChunk(
                    input: inputBase.assumingMemoryBound(to: UInt8.self),
                    inputCount: input.count,
                    output: outputBase.assumingMemoryBound(to: UInt8.self),
                    outputCount: output.count,
                    table: tableBase)
                return nil
            } catch {
                return error
            }
        }
        if let failure { throw failure }
    }

    // MARK: - Decoding

    private static func decodeChunk(
        input: UnsafePointer<UInt8>,
        inputCount: Int,
        output outputStart: UnsafeMutablePointer<UInt8>,
        outputCount: Int,
        table: UnsafeMutablePointer<UInt32>
    ) throws(DecompressionError) {
        let outputEnd = outputStart + outputCount
        var out = outputStart
        var tableOffset = 0
        while out < outputEnd {
            guard inputCount - tableOffset >= XpressHuffman.lengthTableBytes else {
                throw DecompressionError(
                    .xpress,
                    "the input ends before the Huffman table of the block starting at output byte \(out - outputStart)",
                    offset: min(tableOffset, inputCount))
            }
            if let reason = XpressHuffman.buildDecodeTable(packedLengths: input + tableOffset, into: table) {
                throw DecompressionError(.xpress, reason, offset: tableOffset)
            }
            var bits = XpressBitReader(input: input, count: inputCount, position: tableOffset + XpressHuffman.lengthTableBytes)
            let blockEnd = outputEnd - out > blockSize ? out + blockSize : outputEnd
            try decodeBlock(bits: &bits, out: &out, blockEnd: blockEnd,
                            outputStart: outputStart, outputEnd: outputEnd, table: table)
            try bits.checkNotPastEnd()
            tableOffset = bits.referenceCursor
        }
    }

    /// Decodes items until `out` reaches `blockEnd` (a final match may carry it further, never
    /// past `outputEnd`).
    @inline(__always)
    private static func decodeBlock(
        bits: inout XpressBitReader,
        out: inout UnsafeMutablePointer<UInt8>,
        blockEnd: UnsafeMutablePointer<UInt8>,
        outputStart: UnsafeMutablePointer<UInt8>,
        outputEnd: UnsafeMutablePointer<UInt8>,
        table: UnsafeMutablePointer<UInt32>
    ) throws(DecompressionError) {
        // Fast loop: with at least 3 bytes left in the block, three literals in a row need no
        // bounds check of their own.
        while blockEnd - out >= 3 {
            // A refill leaves at least 48 bits: room for three symbols (45 bits), or for one or
            // two symbols and a match's offset bits (at most 45). Literals, the common item, thus
            // come up to three per refill.
            try bits.refill()
            var symbol = bits.decodeSymbol(table)
            if symbol < 256 {
                out.pointee = UInt8(truncatingIfNeeded: symbol)
                symbol = bits.decodeSymbol(table)
                if symbol < 256 {
                    out[1] = UInt8(truncatingIfNeeded: symbol)
                    symbol = bits.decodeSymbol(table)
                    if symbol < 256 {
                        out[2] = UInt8(truncatingIfNeeded: symbol)
                        out += 3
                        continue
                    }
                    out += 2
                    // A match as third symbol may find fewer bits left than its offset needs.
                    try bits.refill()
                } else {
                    out += 1
                }
            }
            try decodeMatch(symbol: symbol, bits: &bits, out: &out, outputStart: outputStart, outputEnd: outputEnd)
        }
        // The block's last bytes, one item at a time.
        while out < blockEnd {
            try bits.refill()
            let symbol = bits.decodeSymbol(table)
            if symbol < 256 {
                out.pointee = UInt8(truncatingIfNeeded: symbol)
                out += 1
            } else {
                try decodeMatch(symbol: symbol, bits: &bits, out: &out, outputStart: outputStart, outputEnd: outputEnd)
            }
        }
    }

    /// Decodes the rest of a match whose header symbol (256...511) was just read, and copies it.
    /// Needs 15 bits in the buffer for the offset.
    @inline(__always)
    private static func decodeMatch(
        symbol: Int,
        bits: inout XpressBitReader,
        out: inout UnsafeMutablePointer<UInt8>,
        outputStart: UnsafeMutablePointer<UInt8>,
        outputEnd: UnsafeMutablePointer<UInt8>
    ) throws(DecompressionError) {
        let header = symbol &- 256
        let offsetBitCount = header &>> 4
        var length = header & 15
        if length == 15 {
            // Must run before the offset bits are taken: it places the reference cursor by
            // the bit count right after the symbol.
            length = try bits.readLongLength()
        }
        length &+= 3
        let offset = bits.takeOffset(extraBits: offsetBitCount)

        let written = out - outputStart
        if offset > written {
            throw matchBeforeStart(offset: offset, written: written, at: bits.approximateOffset)
        }
        let room = outputEnd - out
        if length > room {
            throw matchPastEnd(length: length, room: room, at: bits.approximateOffset)
        }
        copyMatch(to: out, from: outputStart + (written &- offset), offset: offset, length: length, room: room)
        out += length
    }

    @inline(never)
    private static func matchBeforeStart(offset: Int, written: Int, at position: Int) -> DecompressionError {
        DecompressionError(
            .xpress,
            "a match reaches \(offset) bytes back but only \(written) bytes of this chunk are decoded",
            offset: position)
    }

    @inline(never)
    private static func matchPastEnd(length: Int, room: Int, at position: Int) -> DecompressionError {
        DecompressionError(
            .xpress,
            "a match of \(length) bytes runs past the end of the chunk (\(room) bytes left)",
            offset: position)
    }

    /// Copies `length` bytes from `source`, `offset` bytes back; `room` is the space left in the
    /// output (at least `length`). The source was checked to lie inside the bytes written.
    @inline(__always)
    private static func copyMatch(
        to destination: UnsafeMutablePointer<UInt8>,
        from source: UnsafeMutablePointer<UInt8>,
        offset: Int,
        length: Int,
        room: Int
    ) {
        if offset >= 8 && room &- length >= 32 {
            // Whole words, possibly writing up to 31 bytes past the match: those bytes are inside
            // the output and later items overwrite them. With offset >= 8 each 8-byte load reads
            // only bytes stored before it. Nearly all matches are at most 32 bytes, so four words
            // go unconditionally and the loop's branch is rarely taken (fewer mispredictions).
            var from = UnsafeRawPointer(source)
            var to = UnsafeMutableRawPointer(destination)
            to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
            (to + 8).storeBytes(of: (from + 8).loadUnaligned(as: UInt64.self), as: UInt64.self)
            (to + 16).storeBytes(of: (from + 16).loadUnaligned(as: UInt64.self), as: UInt64.self)
            (to + 24).storeBytes(of: (from + 24).loadUnaligned(as: UInt64.self), as: UInt64.self)
            if length > 32 {
                let stop = to + length
                from += 32
                to += 32
                repeat {
                    to.storeBytes(of: from.loadUnaligned(as: UInt64.self), as: UInt64.self)
                    from += 8
                    to += 8
                } while to < stop
            }
        } else if offset == 1 && length >= 16 {
            // A long run of one byte (zero fill, padding): memset.
            destination.update(repeating: source.pointee, count: length)
        } else if offset >= length {
            // No overlap: near the end of the output, where whole words would overshoot.
            destination.update(from: source, count: length)
        } else {
            // Overlapping with a period under 8: each byte may be one this loop just wrote.
            var i = 0
            repeat {
                destination[i] = source[i]
                i &+= 1
            } while i < length
        }
    }
}

/// The bit stream of one block, plus the byte cursor of the reference ([MS-XCA]) decoder, which
/// long match lengths and the next block's table are read from.
///
/// The buffer holds `bitCount` unread bits at its top (most significant first). Bits below them
/// are zero or are the true next bits of the stream (an 8-byte load may bring part of a word it
/// does not count); either way OR-ing the true words in again is harmless.
///
/// The reference decoder loads two words at a block start and afterwards one word whenever fewer
/// than 16 bits remain, so after each step it holds between 16 and 31 unread bits. This reader
/// holds the same bits plus whole words beyond them; `referenceCursor` subtracts those.
private struct XpressBitReader {
    let input: UnsafePointer<UInt8>
    let count: Int
    /// Past the last position where an 8-byte load stays inside the input (may be negative).
    let lastFastPosition: Int
    /// Next input byte to load into the buffer.
    var position: Int
    var buffer: UInt64 = 0
    var bitCount: Int = 0
    /// Zero words supplied after the input ran out; using any of their bits is an error.
    var missingWords: Int = 0

    init(input: UnsafePointer<UInt8>, count: Int, position: Int) {
        self.input = input
        self.count = count
        self.lastFastPosition = count &- 8
        self.position = position
    }

    /// Tops the buffer up to 48...63 bits, whole words only. Never filling the 64th bit keeps
    /// the shift below under 64 even when no bit was used since the last refill.
    @inline(__always)
    mutating func refill() throws(DecompressionError) {
        if position <= lastFastPosition {
            let raw = UInt64(littleEndian: UnsafeRawPointer(input + position).loadUnaligned(as: UInt64.self))
            // Little-endian words w0 w1 w2 w3 -> w0 on top, then w1, w2, w3.
            let swappedHalves = (raw &<< 32) | (raw &>> 32)
            let wordsInStreamOrder = ((swappedHalves & 0x0000_FFFF_0000_FFFF) &<< 16)
                | ((swappedHalves &>> 16) & 0x0000_FFFF_0000_FFFF)
            buffer |= wordsInStreamOrder &>> UInt64(truncatingIfNeeded: bitCount)
            let words = (63 &- bitCount) &>> 4
            position &+= words &<< 1
            bitCount &+= words &<< 4
        } else {
            // Reassigning from a by-value call keeps the reader's fields in registers; an
            // `inout` call that is not inlined would pin them to memory for the whole loop.
            self = try refilledNearEnd()
        }
    }

    @inline(never)
    func refilledNearEnd() throws(DecompressionError) -> XpressBitReader {
        try checkNotPastEnd()
        var reader = self
        reader.refillWordByWord()
        return reader
    }

    private mutating func refillWordByWord() {
        while bitCount < 48 {
            var word: UInt64 = 0
            if count &- position >= 2 {
                word = UInt64(input[position]) | UInt64(input[position &+ 1]) &<< 8
                position &+= 2
            } else {
                missingWords &+= 1
            }
            buffer |= word &<< UInt64(truncatingIfNeeded: 48 &- bitCount)
            bitCount &+= 16
        }
    }

    /// Throws if bits from beyond the input have been consumed: the input was cut short.
    @inline(__always)
    func checkNotPastEnd() throws(DecompressionError) {
        if bitCount < missingWords &* 16 {
            throw DecompressionError(.xpress, "the input ends in the middle of the bit stream", offset: count)
        }
    }

    /// The next Huffman symbol. Needs 15 bits in the buffer.
    @inline(__always)
    mutating func decodeSymbol(_ table: UnsafeMutablePointer<UInt32>) -> Int {
        var entry = table[Int(truncatingIfNeeded: buffer &>> UInt64(64 - XpressHuffman.rootBits))]
        if entry & XpressHuffman.subtableFlag != 0 {
            let subtableBits = UInt64(entry & XpressHuffman.lengthMask)
            let index = Int(truncatingIfNeeded: entry &>> XpressHuffman.payloadShift)
                &+ Int(truncatingIfNeeded: (buffer &<< UInt64(XpressHuffman.rootBits)) &>> (64 &- subtableBits))
            entry = table[index]
        }
        // Bits 4 and 5 of an entry are always zero, so the shift may use the low six bits as they
        // are (what the CPU's shift does anyway) and only the count needs the mask.
        buffer &<<= UInt64(truncatingIfNeeded: entry)
        bitCount &-= Int(entry & XpressHuffman.lengthMask)
        return Int(truncatingIfNeeded: entry &>> XpressHuffman.payloadShift)
    }

    /// Takes `extraBits` (0...15) bits and returns the match offset `1 << extraBits | bits`.
    @inline(__always)
    mutating func takeOffset(extraBits: Int) -> Int {
        // A 1 above the buffer's bits makes the implicit leading one without a shift by 64.
        let marked = (buffer &>> 1) | (1 &<< 63)
        let offset = marked &>> UInt64(truncatingIfNeeded: 63 &- extraBits)
        buffer &<<= UInt64(truncatingIfNeeded: extraBits)
        bitCount &-= extraBits
        return Int(truncatingIfNeeded: offset)
    }

    /// Words loaded beyond the reference decoder's cursor. After a symbol or an item the
    /// reference holds 16...31 bits and this reader those plus whole words, or (only after a
    /// long length's rewind, when the offset bits leave under 16) one word less: then this is -1,
    /// the reference having read a word this reader will load at its next refill.
    @inline(__always)
    var wordsAhead: Int { (bitCount &>> 4) &- 1 }

    /// Where the reference decoder's byte cursor stands (may lie past the input's end).
    var referenceCursor: Int { position &+ 2 &* missingWords &- 2 &* wordsAhead }

    /// A best guess at the input byte being decoded, for error messages.
    var approximateOffset: Int { min(max(referenceCursor &- 2, 0), count) }

    /// Reads the length bytes of a match whose header says 15, at the reference cursor, and
    /// resumes the bit stream after them. Returns the match length minus 3.
    @inline(__always)
    mutating func readLongLength() throws(DecompressionError) -> Int {
        // About one match in ten has a long length, nearly always a single byte: that case is
        // handled here, inline; 16- and 32-bit lengths and errors go to the out-of-line path.
        let cursor = referenceCursor
        if cursor >= 0 && cursor < count {
            let byte = Int(input[cursor])
            if byte != 255 {
                resume(at: cursor &+ 1)
                return byte &+ 15
            }
        }
        let (reader, length) = try resumedAfterLongLength()
        self = reader
        return length
    }

    /// Drops the words read ahead of the reference cursor (in the stream they follow the length
    /// bytes) and continues reading at `cursor`, just past those bytes. The 16...31 bits kept lie
    /// before the length bytes, inside the input. Called right after a match symbol, when the
    /// decode loop guarantees at least 18 bits, so `wordsAhead` is not negative.
    @inline(__always)
    mutating func resume(at cursor: Int) {
        let kept = bitCount &- (wordsAhead &<< 4)
        buffer &= ~(UInt64.max &>> UInt64(truncatingIfNeeded: kept))
        bitCount = kept
        position = cursor
        missingWords = 0
    }

    @inline(never)
    func resumedAfterLongLength() throws(DecompressionError) -> (XpressBitReader, Int) {
        var cursor = referenceCursor
        let start = cursor
        func truncated() -> DecompressionError {
            DecompressionError(.xpress, "the input ends inside the extra length bytes of a match", offset: min(start, count))
        }
        guard cursor >= 0, cursor < count else { throw truncated() }
        var length = Int(input[cursor]) &+ 15
        cursor &+= 1
        if length == 15 + 255 {
            guard count &- cursor >= 2 else { throw truncated() }
            length = Int(input[cursor]) | Int(input[cursor &+ 1]) &<< 8
            cursor &+= 2
            if length == 0 {
                // [MS-XCA]: a zero 16-bit length announces a 32-bit one.
                guard count &- cursor >= 4 else { throw truncated() }
                length = Int(UInt32(littleEndian: UnsafeRawPointer(input + cursor).loadUnaligned(as: UInt32.self)))
                cursor &+= 4
            }
            if length < 15 {
                throw DecompressionError(.xpress, "a match's extended length \(length) is below the minimum of 15", offset: start)
            }
        }
        var reader = self
        reader.resume(at: cursor)
        return (reader, length)
    }
}
