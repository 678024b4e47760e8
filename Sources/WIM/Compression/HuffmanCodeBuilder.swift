/// Length-limited canonical Huffman codes, for the compressors (XPRESS now; LZX and LZMS can use
/// the same builder: only the alphabet size and the length limit differ).
///
/// `buildLengths` turns symbol frequencies into code lengths of at most `maxLength` bits that
/// always form a *complete* prefix code (Kraft sum exactly 1), which is what our decoders (and
/// Microsoft's) require of a table:
///
/// - Lengths come from the classic two-queue Huffman construction over the symbols sorted by
///   frequency (ties by symbol number, so the result is deterministic).
/// - If the longest code exceeds the limit, the frequencies are flattened (`f / 2 | 1`, which
///   keeps every used symbol used) and the code is built again, until it fits. This costs a
///   little compression only in the rare case it triggers (a 64 KiB XPRESS block needs very
///   skewed statistics to want codes over 15 bits), and it ends: all-equal frequencies give a
///   balanced tree of depth ceil(log2 n), which the limit must allow (checked).
/// - Fewer than two used symbols cannot make a complete code, so one or two unused symbols
///   (the lowest numbered) are given a 1-bit code as well.
///
/// `assignCodes` gives canonical codes: shorter codes first, codes of one length in symbol
/// order, each code's bits meant to be written most significant first. That is the convention of
/// XPRESS ([MS-XCA] 2.1/2.2), LZX and LZMS alike.
///
/// The builder keeps its scratch arrays, so building a code for every chunk allocates nothing
/// once the first one is built.
struct HuffmanCodeBuilder {
    /// Used symbols in increasing (frequency, symbol) order.
    private var sorted: [Int32] = []
    /// Node weights: leaves 0..<n (in `sorted` order), then the joined nodes.
    private var weight: [UInt32] = []
    /// Parent of each node (leaves and joined nodes), as a node index.
    private var parent: [Int32] = []
    /// Depth of each joined node.
    private var depth: [UInt8] = []
    private var working: [UInt32] = []

    init() {}

    /// Code lengths (0 for unused symbols, else 1...`maxLength`) for `frequencies`, written into
    /// `lengths` (same count). The code is complete whenever `frequencies.count >= 2`.
    mutating func buildLengths(frequencies: [UInt32], maxLength: Int, into lengths: inout [UInt8]) {
        let symbolCount = frequencies.count
        precondition(symbolCount >= 2 && lengths.count == symbolCount && maxLength <= 32)
        precondition(symbolCount <= 1 << maxLength, "\(symbolCount) symbols cannot all fit in codes of \(maxLength) bits")
        for i in 0..<symbolCount { lengths[i] = 0 }

        working.removeAll(keepingCapacity: true)
        working.append(contentsOf: frequencies)
        var used = 0
        for f in working where f != 0 { used += 1 }
        if used < 2 {
            // One or no symbol: add the lowest unused ones so that two codes of 1 bit result.
            var symbol = 0
            while used < 2 {
                if working[symbol] == 0 { working[symbol] = 1; used += 1 }
                symbol += 1
            }
        }
        while true {
            let longest = huffmanLengths(working, into: &lengths)
            if longest <= maxLength { return }
            for i in 0..<symbolCount where working[i] != 0 { working[i] = working[i] / 2 | 1 }
        }
    }

    /// Plain Huffman lengths for the nonzero entries of `frequencies` (at least two); returns the
    /// longest.
    private mutating func huffmanLengths(_ frequencies: [UInt32], into lengths: inout [UInt8]) -> Int {
        sorted.removeAll(keepingCapacity: true)
        for (symbol, f) in frequencies.enumerated() where f != 0 { sorted.append(Int32(symbol)) }
        sorted.sort { a, b in
            let fa = frequencies[Int(a)], fb = frequencies[Int(b)]
            return fa != fb ? fa < fb : a < b
        }
        let leafCount = sorted.count
        let nodeCount = 2 * leafCount - 1
        weight.removeAll(keepingCapacity: true)
        for symbol in sorted { weight.append(frequencies[Int(symbol)]) }
        parent.removeAll(keepingCapacity: true)
        parent.append(contentsOf: repeatElement(-1, count: nodeCount))

        // Two queues: the leaves in weight order, and the joined nodes, which are made in
        // nondecreasing weight order. Each step joins the two lightest fronts; a tie prefers
        // the leaf, which keeps the tree shallow.
        var nextLeaf = 0
        var nextJoined = leafCount
        func takeLightest(_ weight: [UInt32]) -> Int {
            if nextLeaf < leafCount && (nextJoined == weight.count || weight[nextLeaf] <= weight[nextJoined]) {
                nextLeaf += 1
                return nextLeaf - 1
            }
            nextJoined += 1
            return nextJoined - 1
        }
        while weight.count < nodeCount {
            let a = takeLightest(weight)
            let b = takeLightest(weight)
            let joined = Int32(weight.count)
            // Weights cannot overflow: frequencies of one chunk sum to far less than 2^32.
            weight.append(weight[a] &+ weight[b])
            parent[a] = joined
            parent[b] = joined
        }

        // Depths top down: the root is the last node, and a parent is always made after its
        // children, so walking the joined nodes backwards sees each parent first.
        depth.removeAll(keepingCapacity: true)
        depth.append(contentsOf: repeatElement(0, count: nodeCount - leafCount))
        var longest = 0
        var node = nodeCount - 2
        while node >= leafCount {
            depth[node - leafCount] = depth[Int(parent[node]) - leafCount] &+ 1
            node -= 1
        }
        for leaf in 0..<leafCount {
            let length = Int(depth[Int(parent[leaf]) - leafCount]) + 1
            lengths[Int(sorted[leaf])] = UInt8(truncatingIfNeeded: length)
            longest = max(longest, length)
        }
        return longest
    }

    /// Canonical codes for `lengths` (each at most `maxLength`) into `codes`: the code of a
    /// symbol is its value in the low `lengths[symbol]` bits, to be written most significant
    /// bit first. Unused symbols get 0.
    static func assignCodes(lengths: [UInt8], maxLength: Int, into codes: inout [UInt32]) {
        precondition(codes.count == lengths.count && maxLength <= 32)
        var countOfLength = [Int](repeating: 0, count: maxLength + 1)
        for length in lengths { countOfLength[Int(length)] += 1 }
        countOfLength[0] = 0
        var nextCode = [UInt32](repeating: 0, count: maxLength + 1)
        var code: UInt32 = 0
        if maxLength >= 1 {
            for length in 1...maxLength {
                code = (code &+ UInt32(truncatingIfNeeded: countOfLength[length - 1])) &<< 1
                nextCode[length] = code
            }
        }
        for (symbol, length) in lengths.enumerated() {
            if length == 0 {
                codes[symbol] = 0
            } else {
                codes[symbol] = nextCode[Int(length)]
                nextCode[Int(length)] &+= 1
            }
        }
    }
}
