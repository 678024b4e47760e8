import Primitives

/// Hands out cells in the hive-bins area (offset 0 is the first hbin), opening a new bin when a
/// cell does not fit in the current one: cells never straddle bins. The writer starts with an
/// empty area; the editor starts with an existing hive's bins and only appends a bin, so the
/// cells Windows already wrote never move.
struct CellArena {
    private(set) var bins: [UInt8]
    private var binEnd: Int
    private var cursor: Int
    let time: UInt64

    init(existing: [UInt8] = [], time: UInt64) {
        bins = existing
        binEnd = existing.count
        cursor = existing.count
        self.time = time
    }

    /// A new allocated cell able to hold `payload` bytes; returns its offset. The payload
    /// starts 4 bytes further, after the (negative) size.
    mutating func allocate(_ payload: Int) -> UInt32 {
        let size = HiveFormat.align(payload + 4, HiveFormat.cellAlignment)
        if cursor + size > binEnd {
            closeBin()
            let binSize = max(HiveFormat.binAlignment, HiveFormat.align(size + HiveFormat.binHeaderSize, HiveFormat.binAlignment))
            let start = bins.count
            bins += HiveFormat.binHeader(offset: UInt32(start), size: UInt32(binSize), time: time)
            bins += [UInt8](repeating: 0, count: binSize - HiveFormat.binHeaderSize)
            binEnd = start + binSize
            cursor = start + HiveFormat.binHeaderSize
        }
        let offset = cursor
        bins.put(Int32(-size), at: offset)
        cursor += size
        return UInt32(offset)
    }

    /// Allocates a cell and fills it.
    mutating func store(_ payload: [UInt8]) -> UInt32 {
        let offset = allocate(payload.count)
        bins.put(payload, at: Int(offset) + 4)
        return offset
    }

    mutating func write(_ bytes: [UInt8], cell: UInt32, at offset: Int) {
        bins.put(bytes, at: Int(cell) + 4 + offset)
    }

    mutating func write<T: FixedWidthInteger>(_ value: T, cell: UInt32, at offset: Int) {
        bins.put(value, at: Int(cell) + 4 + offset)
    }

    /// Marks a cell free (positive size) so Windows can reuse it.
    mutating func free(_ cell: UInt32) {
        let offset = Int(cell)
        guard offset + 4 <= bins.count else { return }
        let size = Int32(bitPattern: bins.le32(offset))
        if size < 0 { bins.put(-size, at: offset) }
    }

    /// Ends the current bin: what is left of it becomes one free cell.
    mutating func closeBin() {
        if binEnd > cursor { bins.put(Int32(binEnd - cursor), at: cursor) }
        cursor = binEnd
    }

    mutating func finish() -> [UInt8] {
        closeBin()
        return bins
    }

    // Shared cell encodings, for the writer and the editor.

    /// Stores value data: inline in the vk (≤ 4 bytes), one cell, or big-data segments.
    /// Returns the vk's data size and data offset fields.
    /// Hives before format 1.4 know no big data: there, large data stays in one cell.
    mutating func storeData(_ data: [UInt8], bigData: Bool = true) -> (size: UInt32, offset: UInt32) {
        if data.count <= 4 {
            var inline = data + [UInt8](repeating: 0, count: 4 - data.count)
            inline = Array(inline.prefix(4))
            return (UInt32(data.count) | HiveFormat.dataInline, inline.le32(0))
        }
        if data.count <= HiveFormat.bigDataSegment || !bigData {
            return (UInt32(data.count), store(data))
        }
        var segments: [UInt32] = []
        var start = 0
        while start < data.count {
            let end = min(data.count, start + HiveFormat.bigDataSegment)
            segments.append(store(Array(data[start..<end])))
            start = end
        }
        let list = store(segments.flatMap { $0.littleEndianBytes })
        var db = Array("db".utf8) + UInt16(segments.count).littleEndianBytes + list.littleEndianBytes
        db += [0, 0, 0, 0]
        return (UInt32(data.count), store(db))
    }

    mutating func storeValue(_ value: RegistryValue, bigData: Bool = true) -> UInt32 {
        let (name, compressed) = HiveFormat.encodeName(value.name)
        let (size, offset) = storeData(value.data, bigData: bigData)
        var vk = Array("vk".utf8) + UInt16(name.count).littleEndianBytes + size.littleEndianBytes + offset.littleEndianBytes
        vk += value.type.littleEndianBytes + (compressed ? HiveFormat.valueCompressedName : 0).littleEndianBytes + [0, 0]
        return store(vk + name)
    }

    /// A subkey list: one "lh" hash leaf, or an "ri" index root over several when long.
    /// `children` must be sorted by upper-cased name.
    mutating func storeSubkeyList(_ children: [(offset: UInt32, hash: UInt32)]) -> UInt32 {
        func leaf(_ entries: ArraySlice<(offset: UInt32, hash: UInt32)>) -> UInt32 {
            store(Array("lh".utf8) + UInt16(entries.count).littleEndianBytes
                  + entries.flatMap { $0.offset.littleEndianBytes + $0.hash.littleEndianBytes })
        }
        if children.count <= HiveFormat.maxLeafEntries { return leaf(children[...]) }
        let leaves = stride(from: 0, to: children.count, by: HiveFormat.maxLeafEntries).map {
            leaf(children[$0..<min(children.count, $0 + HiveFormat.maxLeafEntries)])
        }
        return store(Array("ri".utf8) + UInt16(leaves.count).littleEndianBytes + leaves.flatMap { $0.littleEndianBytes })
    }
}
