// LZMS's adaptive Huffman codes on the compressor's side. Nothing about a code is transmitted:
// both sides start each chunk with every symbol counted once, count each symbol they code, and
// after `rebuildInterval` symbols rebuild the code from the counts and halve them (`f / 2 + 1`).
// So the compressor must build exactly the code the decoder builds (LZMSHuffman.swift states
// the construction, after wimlib's format description): sort the symbols by (frequency,
// symbol); merge the two smallest, a leaf before a merged node on equal frequencies; count the
// leaves at each depth (capped at 15 bits); hand the longest lengths to the first symbols in
// sorted order; canonical codewords in (length, symbol) order, shorter first.
//
// `HuffmanCodeBuilder` is not used: it takes each leaf's own depth, which can differ from the
// format's "longest to the first in sorted order" rule when leaves of one frequency end up at
// different depths, and its length limiting is a different one.

/// Builds LZMS code lengths and codewords. Keeps its scratch arrays between builds.
struct LZMSCodeLengthBuilder {
    private var keys: [UInt32]
    private var nodeFrequencies: [UInt32]
    private var nodeParents: [Int32]
    private var leafParents: [Int32]
    private var nodeDepths: [Int32]
    private var lengthCounts: [Int]
    private var nextCodeword: [UInt32]

    init() {
        let n = LZMSFormat.maxOffsetSymbolCount
        keys = [UInt32](repeating: 0, count: n)
        nodeFrequencies = [UInt32](repeating: 0, count: n)
        nodeParents = [Int32](repeating: 0, count: n)
        leafParents = [Int32](repeating: 0, count: n)
        nodeDepths = [Int32](repeating: 0, count: n)
        lengthCounts = [Int](repeating: 0, count: 64)
        nextCodeword = [UInt32](repeating: 0, count: 64)
    }

    /// Lengths and canonical codewords for `count` symbols (1...799) of nonzero frequency.
    mutating func build(_ frequencies: UnsafePointer<UInt32>, count: Int,
                        lengths: UnsafeMutablePointer<UInt8>, codewords: UnsafeMutablePointer<UInt32>) {
        if count <= 0 { return }
        if count == 1 {
            // Only 2-byte chunks have a one-symbol code (one offset slot); the decoder reads
            // either bit value as that symbol.
            lengths[0] = 1
            codewords[0] = 0
            return
        }
        let maxLength = LZMSFormat.maxCodewordLength
        keys.withUnsafeMutableBufferPointer { keys in
            for symbol in 0..<count {
                keys[symbol] = frequencies[symbol] &<< 10 | UInt32(truncatingIfNeeded: symbol)
            }
            // Mostly small alphabets of small counts; the standard sort is fast enough at one
            // build per 512-1024 coded symbols.
            var used = UnsafeMutableBufferPointer(rebasing: keys[0..<count])
            used.sort()
        }
        keys.withUnsafeBufferPointer { keys in
        nodeFrequencies.withUnsafeMutableBufferPointer { nodeFrequencies in
        nodeParents.withUnsafeMutableBufferPointer { nodeParents in
        leafParents.withUnsafeMutableBufferPointer { leafParents in
        nodeDepths.withUnsafeMutableBufferPointer { nodeDepths in
        lengthCounts.withUnsafeMutableBufferPointer { lengthCounts in
            // Two queues: leaves in sorted order, merged nodes in creation order (which is
            // non-decreasing frequency). Leaf first on a tie.
            var nextLeaf = 0, nextNode = 0, nodeCount = 0
            while nodeCount < count - 1 {
                var sum: UInt32 = 0
                for _ in 0..<2 {
                    let leafFrequency = nextLeaf < count ? keys[nextLeaf] >> 10 : UInt32.max
                    if nextNode >= nodeCount || leafFrequency <= nodeFrequencies[nextNode] {
                        leafParents[nextLeaf] = Int32(truncatingIfNeeded: nodeCount)
                        sum &+= leafFrequency
                        nextLeaf += 1
                    } else {
                        nodeParents[nextNode] = Int32(truncatingIfNeeded: nodeCount)
                        sum &+= nodeFrequencies[nextNode]
                        nextNode += 1
                    }
                }
                nodeFrequencies[nodeCount] = sum
                nodeCount += 1
            }
            // Depths top down: the root is the last node, parents come after their children.
            nodeDepths[nodeCount - 1] = 0
            var node = nodeCount - 2
            while node >= 0 {
                nodeDepths[node] = nodeDepths[Int(nodeParents[node])] &+ 1
                node -= 1
            }
            for length in 0..<lengthCounts.count { lengthCounts[length] = 0 }
            var overflow = 0
            for leaf in 0..<count {
                let depth = Int(nodeDepths[Int(leafParents[leaf])]) + 1
                if depth > maxLength { overflow += 1 } else { lengthCounts[depth] += 1 }
            }
            if overflow > 0 {
                // The decoder's limiting, step for step (never needed by real LZMS counts).
                lengthCounts[maxLength] += overflow
                var kraft = 0
                for length in 1...maxLength { kraft += lengthCounts[length] << (maxLength - length) }
                var excess = kraft - (1 << maxLength)
                while excess > 0 {
                    var length = maxLength - 1
                    while length > 0 && lengthCounts[length] == 0 { length -= 1 }
                    if length == 0 { break }
                    lengthCounts[length] -= 1
                    lengthCounts[length + 1] += 2
                    lengthCounts[maxLength] -= 1
                    excess -= 1
                }
            }
            // Longest lengths to the first symbols in (frequency, symbol) order.
            var index = 0
            var length = maxLength
            while length >= 1 {
                var n = lengthCounts[length]
                while n > 0 && index < count {
                    lengths[Int(keys[index] & 0x3FF)] = UInt8(truncatingIfNeeded: length)
                    index += 1
                    n -= 1
                }
                length -= 1
            }
        }}}}}}
        // Canonical codewords: each length's codewords follow the previous length's.
        lengthCounts.withUnsafeBufferPointer { lengthCounts in
        nextCodeword.withUnsafeMutableBufferPointer { nextCodeword in
            var codeword: UInt32 = 0
            for length in 1...maxLength {
                codeword = (codeword &+ UInt32(truncatingIfNeeded: lengthCounts[length - 1])) &<< 1
                nextCodeword[length] = codeword
            }
            for symbol in 0..<count {
                let length = Int(lengths[symbol])
                codewords[symbol] = nextCodeword[length]
                nextCodeword[length] &+= 1
            }
        }}
    }
}

/// One adaptive code on the compressor's side: counts, current lengths and codewords, and the
/// countdown to the next rebuild. Pointers into the compressor's tables, so the item encoder
/// can hold it in a local.
struct LZMSAdaptiveEncoderCode {
    private(set) var symbolCount = 0
    let rebuildInterval: Int
    let frequencies: UnsafeMutablePointer<UInt32>
    let lengths: UnsafeMutablePointer<UInt8>
    let codewords: UnsafeMutablePointer<UInt32>
    private var symbolsUntilRebuild = 0

    init(rebuildInterval: Int, frequencies: UnsafeMutablePointer<UInt32>, lengths: UnsafeMutablePointer<UInt8>,
         codewords: UnsafeMutablePointer<UInt32>) {
        self.rebuildInterval = rebuildInterval
        self.frequencies = frequencies
        self.lengths = lengths
        self.codewords = codewords
    }

    /// Starts a chunk: every symbol counted once, code built from that (as the decoder does).
    mutating func reset(symbolCount: Int, builder: inout LZMSCodeLengthBuilder) {
        self.symbolCount = symbolCount
        frequencies.update(repeating: 1, count: symbolCount)
        builder.build(frequencies, count: symbolCount, lengths: lengths, codewords: codewords)
        symbolsUntilRebuild = rebuildInterval
    }

    /// Writes `symbol`'s codeword, counts it, and rebuilds the code when its interval is up.
    /// Returns true when the code was rebuilt (cost estimates may then be refreshed).
    @inline(__always)
    @discardableResult
    mutating func encode(_ symbol: Int, _ bits: inout LZMSBitWriter, builder: inout LZMSCodeLengthBuilder) -> Bool {
        bits.write(codewords[symbol], count: Int(lengths[symbol]))
        frequencies[symbol] &+= 1
        symbolsUntilRebuild &-= 1
        if symbolsUntilRebuild == 0 {
            rebuild(builder: &builder)
            return true
        }
        return false
    }

    @inline(never)
    private mutating func rebuild(builder: inout LZMSCodeLengthBuilder) {
        builder.build(frequencies, count: symbolCount, lengths: lengths, codewords: codewords)
        for symbol in 0..<symbolCount {
            frequencies[symbol] = frequencies[symbol] &>> 1 &+ 1
        }
        symbolsUntilRebuild = rebuildInterval
    }
}
