/// Every on-disk structure Imprint reads or writes (WIM, regf hives, GPT and MBR, NTFS boot
/// sectors, BCD device data) stores its integers little-endian and its names as UTF-16LE.

extension FixedWidthInteger {
    /// The value's bytes, least significant first.
    @inlinable public var littleEndianBytes: [UInt8] { withUnsafeBytes(of: littleEndian) { Array($0) } }
}

extension Array where Element == UInt8 {
    // Fields whose place the caller has checked against the input's length: one that does not
    // fit is a programming error and traps, input can never make it read past the end.
    @inlinable public func le16(_ offset: Int) -> UInt16 { littleEndian(at: offset) }
    @inlinable public func le32(_ offset: Int) -> UInt32 { littleEndian(at: offset) }
    @inlinable public func le64(_ offset: Int) -> UInt64 { littleEndian(at: offset) }

    @inlinable func littleEndian<Value: FixedWidthInteger>(at offset: Int) -> Value {
        precondition(offset >= 0 && offset <= count - MemoryLayout<Value>.size, "field at \(offset) past the end of \(count) bytes")
        return withUnsafeBytes { Value(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: Value.self)) }
    }

    /// Writes `value` little-endian over the bytes at `offset`, which must exist.
    public mutating func put(_ value: some FixedWidthInteger, at offset: Int) {
        put(value.littleEndianBytes, at: offset)
    }

    /// Writes `bytes` over the bytes at `offset`, which must exist.
    public mutating func put(_ bytes: [UInt8], at offset: Int) {
        replaceSubrange(offset..<offset + bytes.count, with: bytes)
    }
}

extension UnsafeRawBufferPointer {
    // For parse loops over millions of WIM entries, on buffers whose length the caller has
    // checked: bounds are checked in debug builds only. Everything else reads `[UInt8]`.
    @inlinable @inline(__always) public func le16(_ offset: Int) -> UInt16 {
        UInt16(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inlinable @inline(__always) public func le32(_ offset: Int) -> UInt32 {
        UInt32(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inlinable @inline(__always) public func le64(_ offset: Int) -> UInt64 {
        UInt64(littleEndian: loadUnaligned(fromByteOffset: offset, as: UInt64.self))
    }
}

/// Text as Windows stores names: UTF-16 code units, low byte first.
public enum UTF16LE {
    public static func encode(_ text: String) -> [UInt8] {
        text.utf16.flatMap(\.littleEndianBytes)
    }

    /// The code units of `bytes`; an odd last byte is no unit and is left out.
    public static func units<Bytes: RandomAccessCollection<UInt8>>(_ bytes: Bytes) -> [UInt16] where Bytes.Index == Int {
        stride(from: bytes.startIndex, to: bytes.endIndex - 1, by: 2).map { UInt16(bytes[$0]) | UInt16(bytes[$0 + 1]) << 8 }
    }

    /// Unpaired surrogates become U+FFFD rather than an error, as Windows itself shows such names.
    @inlinable public static func decode(_ bytes: UnsafeRawBufferPointer) -> String {
        // An array first: String(decoding:) is several times slower on a lazy collection, and
        // this runs for every name of a WIM's metadata.
        String(decoding: (0..<(bytes.count / 2)).map { bytes.le16($0 * 2) }, as: UTF16.self)
    }

    public static func decode(_ bytes: ArraySlice<UInt8>) -> String { bytes.withUnsafeBytes { decode($0) } }
    public static func decode(_ bytes: [UInt8]) -> String { bytes.withUnsafeBytes { decode($0) } }

    /// The code units of `text` in little-endian memory order, as NTFS (and libntfs-3g's
    /// `ntfschar`) holds names.
    public static func storedUnits(_ text: String) -> [UInt16] { text.utf16.map(\.littleEndian) }

    /// Reads back units held in little-endian memory order.
    public static func decode(storedUnits units: some Sequence<UInt16>) -> String {
        String(decoding: units.map { UInt16(littleEndian: $0) }, as: UTF16.self)
    }
}
