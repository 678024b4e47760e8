// LZMS's adaptive Huffman codes. Nothing about the codes is transmitted: compressor and
// decompressor both count the symbols they code and periodically rebuild each code from those
// counts, so the decoder must rebuild exactly the code the compressor built. The format fixes
// the construction: canonical codes from the classic two-smallest-merge Huffman algorithm
// where, on equal frequencies, a leaf is taken before a merged node, and where longer codewords
// go to the less frequent symbols, ties ordered by symbol value.

/// Decode-table entry layout (one `UInt32` each):
/// - a symbol entry holds the symbol in bits 0-15 and, in bits 16-23, how many bits to drop;
/// - a link entry (bit 31 set) sends codewords longer than the table's index width to a
///   second-level table starting at the index in bits 0-15, indexed by the next
///   bits-16-23 bits.
enum LZMSDecodeEntry {
    static let linkFlag: UInt32 = 1 << 31
    static let lengthShift: UInt32 = 16

    @inline(__always)
    static func symbol(_ symbol: Int, length: Int) -> UInt32 {
        UInt32(truncatingIfNeeded: symbol) | UInt32(truncatingIfNeeded: length) << lengthShift
    }
}

/// One adaptive code: its symbol counts, its decode table and when to rebuild it.
///
/// A value type of pointers into the decompressor's workspace so the decode loop can keep it
/// in locals; the memory belongs to `LZMSWorkspace`.
struct LZMSAdaptiveCode {
    /// Alphabet size (for the offset codes it depends on the chunk size).
    private(set) var symbolCount: Int = 0
    /// Width of the first-level table index; codewords up to this long decode in one lookup.
    let tableBits: Int
    let rebuildInterval: Int
    let frequencies: UnsafeMutablePointer<UInt32>
    let table: UnsafeMutablePointer<UInt32>
    let tableCapacity: Int
    private var symbolsUntilRebuild: Int = 0

    /// Every chunk starts each code from the same all-counts-one state, so the first table
    /// for a given alphabet size is kept here and copied instead of rebuilt (which matters for
    /// small chunks). `pristineSymbolCount` is the alphabet size it was built for, or -1.
    let pristine: UnsafeMutablePointer<UInt32>
    private var pristineSymbolCount = -1
    private var pristineEntryCount = 0

    /// `table` and `pristine` must each hold `tableCapacity(maxSymbolCount:tableBits:)` entries.
    init(maxSymbolCount: Int, tableBits: Int, rebuildInterval: Int, frequencies: UnsafeMutablePointer<UInt32>,
         table: UnsafeMutablePointer<UInt32>, pristine: UnsafeMutablePointer<UInt32>) {
        self.tableBits = tableBits
        self.rebuildInterval = rebuildInterval
        self.frequencies = frequencies
        self.table = table
        self.pristine = pristine
        self.tableCapacity = LZMSAdaptiveCode.tableCapacity(maxSymbolCount: maxSymbolCount, tableBits: tableBits)
    }

    /// Entries a decode table needs: the first level plus the worst case of second-level
    /// tables. A second-level table of `b` index bits holds codewords up to `b` bits longer
    /// than `tableBits` in a complete subtree, which takes at least `b + 1` symbols, so the
    /// second levels never need more than `2^b / (b + 1)` entries per symbol, largest for the
    /// largest `b = 15 - tableBits`.
    static func tableCapacity(maxSymbolCount: Int, tableBits: Int) -> Int {
        let deepest = LZMSFormat.maxCodewordLength - tableBits
        let perSymbol = ((1 << deepest) + deepest) / (deepest + 1)
        return (1 << tableBits) + maxSymbolCount * perSymbol
    }

    /// Starts a chunk: every symbol counted once, code built from that.
    mutating func reset(symbolCount: Int, builder: LZMSCodeBuilder) {
        self.symbolCount = symbolCount
        frequencies.update(repeating: 1, count: symbolCount)
        if symbolCount == pristineSymbolCount {
            table.update(from: pristine, count: pristineEntryCount)
        } else {
            pristineEntryCount = min(builder.build(frequencies, symbolCount: symbolCount, into: table,
                                                   tableBits: tableBits, capacity: tableCapacity), tableCapacity)
            pristine.update(from: table, count: pristineEntryCount)
            pristineSymbolCount = symbolCount
        }
        symbolsUntilRebuild = rebuildInterval
    }

    /// Rebuilds a code from its counts so far, then halves the counts so the code follows
    /// the recent data (the `+ 1` keeps every symbol codable). Static, taking plain values,
    /// so the decode loop's copy of the code never has its address taken and its countdown
    /// can stay in a register.
    @inline(never)
    static func rebuild(_ frequencies: UnsafeMutablePointer<UInt32>, symbolCount: Int, table: UnsafeMutablePointer<UInt32>,
                        tableBits: Int, capacity: Int, builder: LZMSCodeBuilder) {
        builder.build(frequencies, symbolCount: symbolCount, into: table, tableBits: tableBits, capacity: capacity)
        for symbol in 0..<symbolCount {
            frequencies[symbol] = frequencies[symbol] &>> 1 &+ 1
        }
    }

    /// Decodes one symbol, counts it, and rebuilds the code when its interval is up.
    /// `tableBits` must equal `self.tableBits`; passing it as a constant lets the shifts use
    /// immediates.
    @inline(__always)
    mutating func decode(_ bits: inout LZMSBitReader, tableBits: Int, builder: LZMSCodeBuilder) -> Int {
        bits.ensure(LZMSFormat.maxCodewordLength)
        var entry = table[bits.peek(tableBits)]
        if entry & LZMSDecodeEntry.linkFlag != 0 {
            bits.consume(tableBits)
            let linkBits = Int(truncatingIfNeeded: entry &>> LZMSDecodeEntry.lengthShift & 0xFF)
            entry = table[Int(truncatingIfNeeded: entry & 0xFFFF) &+ bits.peek(linkBits)]
        }
        bits.consume(Int(truncatingIfNeeded: entry &>> LZMSDecodeEntry.lengthShift & 0xFF))
        let symbol = Int(truncatingIfNeeded: entry & 0xFFFF)
        frequencies[symbol] &+= 1
        symbolsUntilRebuild &-= 1
        if symbolsUntilRebuild == 0 {
            LZMSAdaptiveCode.rebuild(frequencies, symbolCount: symbolCount, table: table, tableBits: self.tableBits,
                                     capacity: tableCapacity, builder: builder)
            symbolsUntilRebuild = rebuildInterval
        }
        return symbol
    }
}

/// Turns symbol counts into a decode table, using scratch memory from the workspace. Just a
/// pointer, so passing it to the decoder's out-of-line rebuild costs nothing; the arrays are
/// laid out when a build starts. Keeps nothing between builds and allocates nothing.
struct LZMSCodeBuilder {
    private let scratch: UnsafeMutableRawPointer

    /// Bytes of scratch a builder needs.
    static var scratchByteCount: Int { LZMSCodeConstruction.scratchByteCount }

    /// `scratch` must hold `scratchByteCount` bytes, 8-byte aligned, for the builder's lifetime.
    init(scratch: UnsafeMutableRawPointer) {
        self.scratch = scratch
        // Bind each scratch array to its element type once; builds then just find them.
        _ = LZMSCodeConstruction(scratch: scratch, binding: true)
    }

    /// Builds the decode table of a code with `symbolCount` symbols from their frequencies
    /// into `table` (`capacity` entries, first level indexed by `tableBits` bits); returns
    /// how many entries the table occupies.
    @discardableResult
    func build(_ frequencies: UnsafeMutablePointer<UInt32>, symbolCount: Int,
               into table: UnsafeMutablePointer<UInt32>, tableBits: Int, capacity: Int) -> Int {
        LZMSCodeConstruction(scratch: scratch).build(frequencies, symbolCount: symbolCount, into: table,
                                                     tableBits: tableBits, capacity: capacity)
    }
}

/// The canonical Huffman construction itself, over arrays carved from the builder's scratch.
private struct LZMSCodeConstruction {
    static let maxSymbols = LZMSFormat.maxOffsetSymbolCount
    static let symbolBits: UInt32 = 10
    static let symbolMask: UInt32 = 1 << symbolBits - 1
    private static let maxLength = LZMSFormat.maxCodewordLength

    /// (frequency << 10 | symbol), sorted ascending, plus two sentinel slots.
    private let sortKeys: UnsafeMutablePointer<UInt32>
    /// Frequencies, parents and depths of the merged (internal) tree nodes, in creation order.
    private let nodeFrequencies: UnsafeMutablePointer<UInt32>
    private let nodeParents: UnsafeMutablePointer<Int32>
    private let nodeDepths: UnsafeMutablePointer<Int32>
    /// Per-depth counts of merged nodes, then of leaves (index = depth, up to maxSymbols).
    private let mergedPerDepth: UnsafeMutablePointer<Int>
    private let leavesPerDepth: UnsafeMutablePointer<Int>
    /// Codewords per length after limiting (index = length, 0...15), codewords still to place
    /// per length, and per-length cursors for the canonical ordering.
    private let lengthCounts: UnsafeMutablePointer<Int>
    private let remaining: UnsafeMutablePointer<Int>
    private let cursors: UnsafeMutablePointer<Int>
    /// Codeword length of each symbol, and the symbols ordered by (length, symbol).
    private let lengths: UnsafeMutablePointer<UInt8>
    private let canonicalOrder: UnsafeMutablePointer<UInt16>
    /// Counting-sort bucket positions, 32-bit so clearing them is a few vector stores.
    private let radixBuckets: UnsafeMutablePointer<Int32>

    static var scratchByteCount: Int {
        let n = maxSymbols + 2
        return n * (4 + 4 + 4 + 4 + 4 + 8 + 8 + 1 + 2) + 3 * (maxLength + 2) * 8 + 64 * 4 + 64
    }

    init(scratch: UnsafeMutableRawPointer, binding: Bool = false) {
        let n = LZMSCodeConstruction.maxSymbols + 2
        let lengthSlots = LZMSCodeConstruction.maxLength + 2
        var cursor = scratch
        func carve<T>(_ type: T.Type, _ count: Int) -> UnsafeMutablePointer<T> {
            let aligned = cursor.alignedUp(for: T.self)
            let pointer = binding ? aligned.bindMemory(to: T.self, capacity: count) : aligned.assumingMemoryBound(to: T.self)
            cursor = aligned + count * MemoryLayout<T>.stride
            return pointer
        }
        mergedPerDepth = carve(Int.self, n)
        leavesPerDepth = carve(Int.self, n)
        lengthCounts = carve(Int.self, lengthSlots)
        remaining = carve(Int.self, lengthSlots)
        cursors = carve(Int.self, lengthSlots)
        radixBuckets = carve(Int32.self, 64)
        sortKeys = carve(UInt32.self, n)
        nodeFrequencies = carve(UInt32.self, n)
        nodeParents = carve(Int32.self, n)
        nodeDepths = carve(Int32.self, n)
        canonicalOrder = carve(UInt16.self, n)
        lengths = carve(UInt8.self, n)
    }

    @discardableResult
    func build(_ frequencies: UnsafeMutablePointer<UInt32>, symbolCount count: Int,
               into table: UnsafeMutablePointer<UInt32>, tableBits: Int, capacity: Int) -> Int {
        if count <= 0 || count > LZMSCodeConstruction.maxSymbols { return 0 }
        if count == 1 {
            // Only for 2-byte chunks (one offset slot). The compressor writes a lone symbol as
            // the 1-bit codeword 0; read either bit value as that symbol.
            table.update(repeating: LZMSDecodeEntry.symbol(0, length: 1), count: 1 << tableBits)
            return 1 << tableBits
        }
        sortByFrequency(frequencies, count: count)
        computeLengthCounts(count: count)
        assignLengths(count: count)
        return fillTable(table, tableBits: tableBits, capacity: capacity)
    }

    /// Orders the symbols by (frequency, symbol) into `sortKeys`.
    ///
    /// A counting sort on the frequency, stable so equal frequencies stay in symbol order, with
    /// every frequency of 63 or more in the last bucket, which is then insertion-sorted. That
    /// bucket is small: the frequencies of a code add up to at most 2 * (1024 + symbols)
    /// (each rebuild halves them after at most 1024 new counts), so no more than ~60 symbols
    /// can reach 63.
    private func sortByFrequency(_ frequencies: UnsafeMutablePointer<UInt32>, count: Int) {
        let bucketCount = 64
        let buckets = radixBuckets
        buckets.update(repeating: 0, count: bucketCount)
        for symbol in 0..<count {
            buckets[Int(min(frequencies[symbol], UInt32(bucketCount - 1)))] &+= 1
        }
        var start: Int32 = 0
        for bucket in 0..<bucketCount {
            let size = buckets[bucket]
            buckets[bucket] = start
            start &+= size
        }
        let largeStart = Int(buckets[bucketCount - 1])
        for symbol in 0..<count {
            let frequency = frequencies[symbol]
            let bucket = Int(min(frequency, UInt32(bucketCount - 1)))
            sortKeys[Int(buckets[bucket])] = frequency &<< LZMSCodeConstruction.symbolBits | UInt32(truncatingIfNeeded: symbol)
            buckets[bucket] &+= 1
        }
        // The keys put the frequency above the symbol, so ordering keys orders both.
        var i = largeStart &+ 1
        while i < count {
            let key = sortKeys[i]
            var j = i
            while j > largeStart && sortKeys[j &- 1] > key {
                sortKeys[j] = sortKeys[j &- 1]
                j &-= 1
            }
            sortKeys[j] = key
            i &+= 1
        }
    }

    /// Runs the Huffman merge over the sorted leaves and leaves in `lengthCounts` how many
    /// codewords each length 1...15 gets.
    ///
    /// Leaves and merged nodes each form a queue already sorted by frequency (merged nodes are
    /// created in non-decreasing frequency order), so the two smallest are always at the queue
    /// fronts; on a tie the leaf goes first, as the format requires. Only merged nodes are
    /// stored: the number of leaves at depth d is the child slots of the merged nodes at depth
    /// d - 1 minus the merged nodes at depth d.
    private func computeLengthCounts(count: Int) {
        // Each merge takes the two smallest fronts of the two queues, leaf first on a tie. With
        // l0 <= l1 the next two leaves and n0 <= n1 the next two unmerged nodes, the sequential
        // picks come down to: two leaves if l1 <= n0, two nodes if n1 < l0, else one of each.
        // Deciding a whole merge at once, without branches (the outcome is unpredictable),
        // halves the chain of dependent loads. An exhausted queue shows an infinite frequency:
        // the leaves through sentinel keys after the last one, the nodes through the slot of
        // the node being built and the one after it. A node's parent is written whenever it is
        // among the fronts and rewritten until it is really merged, so the last write is right.
        let symbolBits = LZMSCodeConstruction.symbolBits
        sortKeys[count] = UInt32.max
        sortKeys[count &+ 1] = UInt32.max
        var nextLeaf = 0
        var nextNode = 0
        var nodeCount = 0
        while nodeCount < count &- 1 {
            nodeFrequencies[nodeCount] = UInt32.max
            nodeFrequencies[nodeCount &+ 1] = UInt32.max
            let l0 = sortKeys[nextLeaf] &>> symbolBits, l1 = sortKeys[nextLeaf &+ 1] &>> symbolBits
            let n0 = nodeFrequencies[nextNode], n1 = nodeFrequencies[nextNode &+ 1]
            let twoLeaves = l1 <= n0
            let twoNodes = n1 < l0
            let sum = twoLeaves ? l0 &+ l1 : (twoNodes ? n0 &+ n1 : l0 &+ n0)
            let leavesTaken = twoLeaves ? 2 : (twoNodes ? 0 : 1)
            nodeParents[nextNode] = Int32(truncatingIfNeeded: nodeCount)
            nodeParents[nextNode &+ 1] = Int32(truncatingIfNeeded: nodeCount)
            nextLeaf &+= leavesTaken
            nextNode &+= 2 &- leavesTaken
            nodeFrequencies[nodeCount] = sum
            nodeCount &+= 1
        }

        // Parents are created after their children, so one backward pass sets all depths.
        // Depths are below `count` (a tree of `count` leaves is at most `count - 1` deep).
        // A node is at most one level below the deepest seen so far, so each depth's counter
        // is cleared when that depth first appears instead of clearing them all up front.
        let root = nodeCount &- 1
        nodeDepths[root] = 0
        mergedPerDepth[0] = 1
        var deepest = 0
        var node = root &- 1
        while node >= 0 {
            let depth = Int(nodeDepths[Int(nodeParents[node])]) &+ 1
            nodeDepths[node] = Int32(truncatingIfNeeded: depth)
            if depth > deepest {
                deepest = depth
                mergedPerDepth[depth] = 0
            }
            mergedPerDepth[depth] &+= 1
            node &-= 1
        }
        mergedPerDepth[deepest &+ 1] = 0

        let maxLength = LZMSCodeConstruction.maxLength
        let leafDepths = deepest &+ 1
        leavesPerDepth[0] = 0
        for depth in 1...leafDepths {
            leavesPerDepth[depth] = 2 &* mergedPerDepth[depth &- 1] &- mergedPerDepth[depth]
        }
        for length in 0...maxLength {
            lengthCounts[length] = length <= leafDepths ? leavesPerDepth[length] : 0
        }
        if leafDepths > maxLength {
            var overflow = 0
            for depth in (maxLength &+ 1)...leafDepths { overflow &+= leavesPerDepth[depth] }
            limitLengths(overflow: overflow)
        }
    }

    /// Caps codeword lengths at 15 bits while keeping the code complete.
    ///
    /// The format's frequency halving keeps real codes within 15 bits (the shallowest tree
    /// with a 16-bit codeword needs a total frequency no LZMS alphabet reaches), so this only
    /// guards the decoder's table layout. The `overflow` leaves deeper than 15 move up to 15;
    /// each unit of over-subscription is then paid for by pushing the deepest shorter leaf one
    /// level down and turning one length-15 leaf into its new sibling.
    private func limitLengths(overflow: Int) {
        let maxLength = LZMSCodeConstruction.maxLength
        lengthCounts[maxLength] &+= overflow
        var kraft = 0  // in units of 2^-15
        for length in 1...maxLength { kraft &+= lengthCounts[length] &<< (maxLength &- length) }
        var excess = kraft &- (1 << maxLength)
        while excess > 0 {
            var length = maxLength &- 1
            while length > 0 && lengthCounts[length] == 0 { length &-= 1 }
            if length == 0 { break }
            lengthCounts[length] &-= 1
            lengthCounts[length &+ 1] &+= 2
            lengthCounts[maxLength] &-= 1
            excess &-= 1
        }
    }

    /// Gives the longest codewords to the first symbols in (frequency, symbol) order, then
    /// orders the symbols by (length, symbol), the order canonical codewords are handed out in.
    private func assignLengths(count: Int) {
        let maxLength = LZMSCodeConstruction.maxLength
        var index = 0
        var length = maxLength
        while length >= 1 {
            var n = lengthCounts[length]
            while n > 0 && index < count {
                lengths[Int(sortKeys[index] & LZMSCodeConstruction.symbolMask)] = UInt8(truncatingIfNeeded: length)
                index &+= 1
                n &-= 1
            }
            length &-= 1
        }
        cursors[0] = 0
        cursors[1] = 0
        for length in 1...maxLength {
            cursors[length &+ 1] = cursors[length] &+ lengthCounts[length]
        }
        for symbol in 0..<count {
            let length = Int(lengths[symbol])
            canonicalOrder[cursors[length]] = UInt16(truncatingIfNeeded: symbol)
            cursors[length] &+= 1
        }
    }

    /// Stores `entry` `count` times; spans are mostly 1 to 16 entries, too short for a
    /// memset-style call to pay off.
    @inline(__always)
    private static func fill(_ start: UnsafeMutablePointer<UInt32>, with entry: UInt32, count: Int) {
        if count >= 2 {
            // Two entries per store; every span is a power of two.
            let pair = UInt64(entry) | UInt64(entry) &<< 32
            let raw = UnsafeMutableRawPointer(start)
            var offset = 0
            let byteCount = count &* 4
            repeat {
                raw.storeBytes(of: pair, toByteOffset: offset, as: UInt64.self)
                offset &+= 8
            } while offset < byteCount
        } else {
            start.pointee = entry
        }
    }

    /// Writes the decode table. Canonical codewords of each length are consecutive numbers
    /// following the previous length's, so walking the symbols in (length, symbol) order fills
    /// the first-level table front to back; codewords longer than the index width share a
    /// first-level prefix and go to a second-level table sized for the longest of them.
    private func fillTable(_ table: UnsafeMutablePointer<UInt32>, tableBits: Int, capacity: Int) -> Int {
        let maxLength = LZMSCodeConstruction.maxLength
        let firstLevelSize = 1 << tableBits
        var position = 0  // index into canonicalOrder
        var next = 0      // next first-level entry to fill
        var length = 1
        while length <= tableBits {
            let span = 1 &<< (tableBits &- length)
            var n = lengthCounts[length]
            while n > 0 && next &+ span <= firstLevelSize {
                let entry = LZMSDecodeEntry.symbol(Int(canonicalOrder[position]), length: length)
                LZMSCodeConstruction.fill(table + next, with: entry, count: span)
                next &+= span
                position &+= 1
                n &-= 1
            }
            length &+= 1
        }
        if next >= firstLevelSize { return firstLevelSize }

        // Long codewords. `remaining[l]` counts the length-l codewords not yet placed, which
        // sizes each second-level table: it must hold every codeword under its prefix, and
        // canonical order fills a prefix with the shortest remaining codewords first.
        for l in 0...maxLength { remaining[l] = lengthCounts[l] }
        var codeword = next          // the current codeword, `length` bits long
        var currentPrefix = -1
        var linkStart = 0
        var linkBits = 0
        var freeEntry = firstLevelSize
        length = tableBits
        while length < maxLength {
            length &+= 1
            codeword &<<= 1
            var n = lengthCounts[length]
            while n > 0 {
                let extra = length &- tableBits
                let prefix = codeword &>> extra
                if prefix != currentPrefix {
                    var bits = extra
                    var unfilled = 1 << bits
                    while true {
                        unfilled &-= remaining[tableBits &+ bits]
                        if unfilled <= 0 || tableBits &+ bits >= maxLength { break }
                        bits &+= 1
                        unfilled &<<= 1
                    }
                    // Cannot fail for the complete codes `build` makes; stops rather than
                    // writing out of bounds if it somehow did.
                    guard prefix < firstLevelSize, freeEntry &+ (1 << bits) <= capacity else { return freeEntry }
                    table[prefix] = LZMSDecodeEntry.linkFlag | UInt32(truncatingIfNeeded: freeEntry)
                        | UInt32(truncatingIfNeeded: bits) << LZMSDecodeEntry.lengthShift
                    currentPrefix = prefix
                    linkStart = freeEntry
                    linkBits = bits
                    freeEntry &+= 1 << bits
                }
                guard linkBits >= extra else { return freeEntry }
                let span = 1 &<< (linkBits &- extra)
                let first = linkStart &+ (codeword & (1 &<< extra &- 1)) &* span
                guard first &+ span <= capacity else { return freeEntry }
                let entry = LZMSDecodeEntry.symbol(Int(canonicalOrder[position]), length: extra)
                LZMSCodeConstruction.fill(table + first, with: entry, count: span)
                remaining[length] &-= 1
                position &+= 1
                codeword &+= 1
                n &-= 1
            }
        }
        return freeEntry
    }
}

