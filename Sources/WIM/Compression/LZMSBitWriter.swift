// The backward half of an LZMS chunk, written: Huffman codewords and verbatim extra bits. The
// decoder (`LZMSBitReader`) reads 16-bit little-endian words from the end of the chunk towards
// its start, each word from its most significant bit down; so the writer fills words most
// significant bit first and stores them from the end of its buffer downwards. The compressor
// later moves the words down to sit right after the range-coded words.

/// Writes bits backwards from the end of an output buffer.
struct LZMSBitWriter {
    private let output: UnsafeMutablePointer<UInt8>
    /// Offset of the lowest word written; the next word goes just below it.
    private(set) var position: Int
    /// Bits not yet stored, right-aligned, the oldest highest.
    private var pending: UInt64 = 0
    private var pendingCount = 0

    /// Writes will go below `output + end`; the caller keeps them above the range encoder's words.
    init(output: UnsafeMutablePointer<UInt8>, end: Int) {
        self.output = output
        self.position = end
    }

    /// Appends the low `count` bits of `value` (0...32 bits), most significant first.
    @inline(__always)
    mutating func write(_ value: UInt32, count: Int) {
        pending = pending &<< UInt64(truncatingIfNeeded: count) | UInt64(value)
        pendingCount &+= count
        while pendingCount >= 16 {
            pendingCount &-= 16
            position &-= 2
            let word = UInt16(truncatingIfNeeded: pending &>> UInt64(truncatingIfNeeded: pendingCount))
            UnsafeMutableRawPointer(output + position).storeBytes(of: word.littleEndian, as: UInt16.self)
        }
    }

    /// The lowest offset the stream can reach once flushed (the partial word included).
    var worstCaseLowestOffset: Int { position &- 2 }

    /// Stores the last partial word (zero bits fill it; the decoder never uses them).
    mutating func finish() {
        if pendingCount > 0 {
            write(0, count: 16 &- pendingCount)
        }
    }
}
