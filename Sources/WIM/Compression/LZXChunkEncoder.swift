/// The work of `LZXCompressor` on one chunk: E8 translation, match finding, parsing (lazy or
/// near-optimal) and writing the blocks. See LZXCompressor.swift for the format facts.
struct LZXChunkEncoder {
    let state: LZXEncoderState
    let windowOrder: Int
    let mainSymbolCount: Int
    let settings: LZXParseSettings
    /// The farthest a match may reach back: `windowSize - 3` (see `LZX.mainSymbolCount`).
    let maxOffset: Int
    var writer: LZXBitWriter

    /// The chunk (E8-translated, in `state.data`) and its size.
    private var data: UnsafeMutablePointer<UInt8>
    private var count = 0
    /// Match finder: the first position not yet linked into the hash chains.
    private var nextInsert = 0
    private let hashShift: UInt32
    /// The recent-offset queue at the current block's start.
    private var r0 = 1
    private var r1 = 1
    private var r2 = 1

    /// Costs of symbols never seen in the statistics they come from: dear, but not so dear that
    /// the parser cannot start using them.
    static let unusedMainCost: UInt32 = 15
    static let unusedLengthCost: UInt32 = 12

    init(state: LZXEncoderState, windowOrder: Int, mainSymbolCount: Int, settings: LZXParseSettings) {
        self.state = state
        self.windowOrder = windowOrder
        self.mainSymbolCount = mainSymbolCount
        self.settings = settings
        maxOffset = (1 << windowOrder) - 3
        writer = LZXBitWriter(output: state.output, capacity: state.outputCapacity)
        data = state.data
        hashShift = UInt32(32 - state.hashBits)
    }

    /// Encodes `input` (1...chunkCapacity bytes) into `state.output`; returns the size.
    mutating func run(_ input: UnsafeRawBufferPointer) -> Int {
        count = input.count
        guard count > 0, let base = input.baseAddress else { return 0 }
        UnsafeMutableRawPointer(data).copyMemory(from: base, byteCount: count)
        (data + count).update(repeating: 0, count: 8)
        Self.applyE8Translation(data, count: count)
        state.head.update(repeating: -1, count: 1 << state.hashBits)
        state.head3.update(repeating: -1, count: 1 << MatchFinding.nearTableBits)
        nextInsert = 0
        for i in 0..<mainSymbolCount { state.previousMainLengths[i] = 0 }
        for i in 0..<LZX.lengthSymbolCount { state.previousLengthLengths[i] = 0 }
        setDefaultCosts()

        var blockStart = 0
        while blockStart < count {
            let blockEnd = min(count, blockStart + state.blockCapacity)
            let itemCount = settings.optimal
                ? parseOptimal(from: blockStart, to: blockEnd)
                : parseLazy(from: blockStart, to: blockEnd)
            writeBlock(itemCount: itemCount, size: blockEnd - blockStart)
            blockStart = blockEnd
        }
        return writer.finish()
    }

    // MARK: - E8 translation

    /// The encoder's side of the x86 CALL translation (the decoder's `undoE8Translation` is its
    /// inverse): relative CALL targets become absolute, so calls to one function match.
    static func applyE8Translation(_ data: UnsafeMutablePointer<UInt8>, count: Int) {
        guard count > 10 else { return }
        let limit = count - 10
        let raw = UnsafeMutableRawPointer(data)
        var index = 0
        while index < limit {
            if data[index] != 0xE8 {
                index &+= 1
                continue
            }
            let target = raw + (index &+ 1)
            let value = Int32(littleEndian: target.loadUnaligned(as: Int32.self))
            let position = Int32(truncatingIfNeeded: index)
            if value >= -position && value < LZX.e8FileSize {
                let translated = value < LZX.e8FileSize &- position ? value &+ position : value &- LZX.e8FileSize
                target.storeBytes(of: translated.littleEndian, as: Int32.self)
            }
            index &+= 5
        }
    }

    // MARK: - Match finding
    //
    // Chains over 4-byte prefixes find the long matches; a 3-byte match is only worth its
    // symbol when it is near, so for those one table keeps the latest position per 3-byte hash
    // and nothing more. Chains over 3-byte prefixes (as before) spent most of their depth on
    // candidates that match 3 bytes and no more: on the text of /usr/share/doc the two tables
    // give a 0.14% smaller WIM for about 4% less CPU.

    /// Links `position` (which must be `nextInsert` and have 3 bytes ahead; the fourth may be
    /// the chunk's zero padding) into both tables; returns the previous position with the same
    /// 3-byte hash and the previous one with the same 4-byte hash, or -1.
    @inline(__always)
    private mutating func insert(_ position: Int) -> (near3: Int, chain: Int) {
        let word = UInt32(littleEndian: UnsafeRawPointer(data + position).loadUnaligned(as: UInt32.self))
        let slot3 = MatchFinding.slot3(word)
        let near3 = Int(state.head3[slot3])
        state.head3[slot3] = Int32(truncatingIfNeeded: position)
        let slot = MatchFinding.slot4(word, shift: hashShift)
        let candidate = Int(state.head[slot])
        state.head[slot] = Int32(truncatingIfNeeded: position)
        state.previous[position] = Int32(truncatingIfNeeded: candidate)
        nextInsert = position &+ 1
        return (near3, candidate)
    }

    /// Links every position before `end` not yet linked (and that has 3 bytes ahead).
    @inline(__always)
    private mutating func insertUpTo(_ end: Int) {
        let stop = min(end, count &- 2)
        var position = nextInsert
        while position < stop {
            _ = insert(position)
            position &+= 1
        }
        if nextInsert < end { nextInsert = end }
    }

    /// Links `position` (= `nextInsert`) and looks for matches: the nearest 3-byte one, then
    /// along the 4-byte chain, calling `found(length, offset)` for each match longer than every
    /// earlier one (so in increasing length), of at least 3 and at most `maxLength` bytes.
    /// Returns the longest length (0 if none).
    @inline(__always)
    private mutating func findMatches(_ position: Int, maxLength: Int, depth: Int, _ found: (Int, Int) -> Void) -> Int {
        guard position <= count &- 3 else { return 0 }
        let (near3, chainHead) = insert(position)
        var candidate = chainHead
        guard maxLength >= 3 else { return 0 }
        let here = UnsafePointer(data + position)
        let limitPosition = max(0, position &- maxOffset)
        let nice = settings.niceLength
        var best = 2
        if near3 >= limitPosition {
            let there = UnsafePointer(data + near3)
            if there[0] == here[0] && there[1] == here[1] && there[2] == here[2] {
                best = MatchFinding.commonLength(here, there, from: 3, limit: maxLength)
                found(best, position &- near3)
                if best >= nice || best == maxLength { return best }
            }
        }
        // A 4-byte chain cannot give a match shorter than 4.
        guard maxLength >= 4 else { return best > 2 ? best : 0 }
        let prefix = UnsafeRawPointer(here).loadUnaligned(as: UInt32.self)
        var remaining = depth
        let previous = state.previous
        while candidate >= limitPosition {
            let there = UnsafePointer(data + candidate)
            if there[best] == here[best] && UnsafeRawPointer(there).loadUnaligned(as: UInt32.self) == prefix {
                let length = MatchFinding.commonLength(here, there, from: 4, limit: maxLength)
                if length > best {
                    best = length
                    found(length, position &- candidate)
                    if length >= nice || length == maxLength { break }
                }
            }
            remaining &-= 1
            if remaining == 0 { break }
            candidate = Int(previous[candidate])
        }
        return best > 2 ? best : 0
    }

    // MARK: - Lazy parsing

    /// Greedy parsing with one step of look-ahead, and the most recent offset tried first.
    private mutating func parseLazy(from blockStart: Int, to blockEnd: Int) -> Int {
        let items = state.items
        var itemCount = 0
        var q0 = r0, q1 = r1, q2 = r2
        var position = blockStart
        let depth = settings.searchDepth
        let nice = settings.niceLength
        while position < blockEnd {
            let maxLength = min(LZX.maxMatchLength, blockEnd &- position)
            if maxLength < 2 {
                insertUpTo(position &+ 1)
                items[itemCount] = UInt32(data[position])
                itemCount &+= 1
                position &+= 1
                continue
            }
            var repLength = 0
            if q0 <= position {
                repLength = MatchFinding.commonLength(data + position, data + (position &- q0), from: 0, limit: maxLength)
            }
            var bestLength = 0, bestOffset = 0
            if nextInsert <= position {
                insertUpTo(position)
                bestLength = findMatches(position, maxLength: maxLength, depth: depth) { length, offset in
                    bestLength = length
                    bestOffset = offset
                }
            }
            if repLength >= 2 && repLength &+ 1 >= bestLength {
                items[itemCount] = LZXItem.match(length: repLength, code: 0)
                itemCount &+= 1
                position &+= repLength
                insertUpTo(position)
                continue
            }
            if bestLength < 3 || (bestLength == 3 && bestOffset > 8192) {
                items[itemCount] = UInt32(data[position])
                itemCount &+= 1
                position &+= 1
                continue
            }
            // While the next position has a longer match, this byte goes as a literal.
            while bestLength < nice && position &+ 1 < blockEnd {
                let nextMax = min(LZX.maxMatchLength, blockEnd &- position &- 1)
                var nextLength = 0, nextOffset = 0
                insertUpTo(position &+ 1)
                _ = findMatches(position &+ 1, maxLength: nextMax, depth: depth) { length, offset in
                    nextLength = length
                    nextOffset = offset
                }
                guard nextLength > bestLength else { break }
                items[itemCount] = UInt32(data[position])
                itemCount &+= 1
                position &+= 1
                bestLength = nextLength
                bestOffset = nextOffset
            }
            let code: Int
            if bestOffset == q0 {
                code = 0
            } else if bestOffset == q1 {
                code = 1
                q1 = q0
                q0 = bestOffset
            } else if bestOffset == q2 {
                code = 2
                q2 = q0
                q0 = bestOffset
            } else {
                code = bestOffset &+ LZX.offsetAdjustment
                q2 = q1
                q1 = q0
                q0 = bestOffset
            }
            items[itemCount] = LZXItem.match(length: bestLength, code: code)
            itemCount &+= 1
            position &+= bestLength
            insertUpTo(position)
        }
        r0 = q0
        r1 = q1
        r2 = q2
        return itemCount
    }

    // MARK: - Near-optimal parsing

    /// Finds and caches the block's matches, then runs the minimum-cost passes. Returns the
    /// number of items of the last pass (in `state.items`).
    private mutating func parseOptimal(from blockStart: Int, to blockEnd: Int) -> Int {
        let blockLength = blockEnd &- blockStart
        let cacheStart = state.cacheStart
        let cacheLength = state.cacheLength
        let cacheOffset = state.cacheOffset
        let cacheLimit = state.cacheCapacity &- LZXEncoderState.maxMatchesPerPosition
        let depth = settings.searchDepth
        let nice = settings.niceLength
        var used = 0
        var skipUntil = 0
        insertUpTo(blockStart)
        for i in 0..<blockLength {
            let position = blockStart &+ i
            cacheStart[i] = Int32(truncatingIfNeeded: used)
            if position < skipUntil || used > cacheLimit {
                insertUpTo(position &+ 1)
                continue
            }
            let maxLength = min(LZX.maxMatchLength, blockEnd &- position)
            var found = 0
            let longest = findMatches(position, maxLength: maxLength, depth: depth) { length, offset in
                if found < LZXEncoderState.maxMatchesPerPosition {
                    cacheLength[used &+ found] = UInt16(truncatingIfNeeded: length)
                    cacheOffset[used &+ found] = UInt32(truncatingIfNeeded: offset)
                    found &+= 1
                } else {
                    // Keep the longest: overwrite the last entry.
                    cacheLength[used &+ found &- 1] = UInt16(truncatingIfNeeded: length)
                    cacheOffset[used &+ found &- 1] = UInt32(truncatingIfNeeded: offset)
                }
            }
            insertUpTo(position &+ 1)
            used &+= found
            if longest >= nice { skipUntil = position &+ longest }
        }
        cacheStart[blockLength] = Int32(truncatingIfNeeded: used)

        var itemCount = 0
        let startQueue = (r0, r1, r2)
        if settings.greedyStart && blockStart == 0 {
            // The chunk's first block has no codes to price with: take them from a quick
            // greedy parse of its own matches rather than from fixed guesses.
            itemCount = greedyPass(from: blockStart, length: blockLength)
            setCostsFromStatistics(itemCount: itemCount)
        }
        for pass in 0..<settings.passes {
            if pass > 0 { setCostsFromStatistics(itemCount: itemCount) }
            (r0, r1, r2) = startQueue
            itemCount = minimumCostPass(from: blockStart, length: blockLength)
        }
        return itemCount
    }

    /// A greedy parse over the match cache (at each position the longest of the cached matches
    /// and a repeat of the most recent offset, else a literal), only for its statistics. Leaves
    /// the items in `state.items` (returns their count); r0, r1, r2 are not changed.
    private mutating func greedyPass(from blockStart: Int, length blockLength: Int) -> Int {
        let items = state.items
        let cacheStart = state.cacheStart
        let cacheLength = state.cacheLength
        let cacheOffset = state.cacheOffset
        let data = UnsafePointer(self.data)
        // Only the most recent offset is tried as a repeat here.
        var q0 = r0
        var count = 0
        var i = 0
        while i < blockLength {
            let position = blockStart &+ i
            let here = data + position
            let maxLength = min(LZX.maxMatchLength, blockLength &- i)
            var repeatLength = 0
            if maxLength >= 2, q0 <= position {
                let there = here - q0
                if there[0] == here[0] && there[1] == here[1] {
                    repeatLength = MatchFinding.commonLength(here, there, from: 2, limit: maxLength)
                }
            }
            let last = Int(cacheStart[i &+ 1]) &- 1
            let cachedLength = last >= Int(cacheStart[i]) ? Int(cacheLength[last]) : 0
            if repeatLength >= 2 && repeatLength &+ 1 >= cachedLength {
                items[count] = LZXItem.match(length: repeatLength, code: 0)
                i &+= repeatLength
            } else if cachedLength >= 3 {
                let offset = Int(cacheOffset[last])
                items[count] = LZXItem.match(length: cachedLength, code: offset &+ LZX.offsetAdjustment)
                q0 = offset
                i &+= cachedLength
            } else {
                items[count] = UInt32(here[0])
                i &+= 1
            }
            count &+= 1
        }
        return count
    }

    /// One forward minimum-cost pass over the block with the current costs. Leaves the parse in
    /// `state.items` (returns its count) and the queue after it in r0, r1, r2.
    private mutating func minimumCostPass(from blockStart: Int, length blockLength: Int) -> Int {
        let pathCost = state.pathCost
        let pathItem = state.pathItem
        let pathQueue = state.pathQueue
        let cacheStart = state.cacheStart
        let cacheLength = state.cacheLength
        let cacheOffset = state.cacheOffset
        let data = UnsafePointer(self.data)
        let nice = settings.niceLength
        let everyLengthUpTo = settings.everyLengthUpTo
        pathCost[0] = 0
        (pathCost + 1).update(repeating: UInt32.max, count: blockLength)
        pathQueue[0] = Int32(truncatingIfNeeded: r0)
        pathQueue[1] = Int32(truncatingIfNeeded: r1)
        pathQueue[2] = Int32(truncatingIfNeeded: r2)

        let mainCostArray = state.mainCost
        let lengthCostArray = state.lengthCost
        let alignedCostArray = state.alignedCost
        mainCostArray.withUnsafeBufferPointer { mainCostBuffer in
        lengthCostArray.withUnsafeBufferPointer { lengthCostBuffer in
        alignedCostArray.withUnsafeBufferPointer { alignedCostBuffer in
            let mainCost = mainCostBuffer.baseAddress!
            let lengthCost = lengthCostBuffer.baseAddress!
            let alignedCost = alignedCostBuffer.baseAddress!

            // Only the cost and the item are kept per position while relaxing: the queue at a
            // position follows from its final item and the queue where that item started, so it
            // is worked out once, when the pass reaches the position.
            @inline(__always) func relax(_ target: Int, _ cost: UInt32, _ item: UInt32) {
                if cost < pathCost[target] {
                    pathCost[target] = cost
                    pathItem[target] = item
                }
            }
            // Main symbol (header) and length symbol cost of every length in every slot, one
            // load in the loop below: 30 slots x 256 lengths for a 32 KiB window.
            let matchCost = state.matchCost
            let slotCount = (mainSymbolCount &- LZX.literalCount) &>> 3
            for slot in 0..<slotCount {
                let header = LZX.literalCount &+ slot &<< 3
                let row = matchCost + slot &* LZX.lengthCount
                for length in LZX.minMatchLength...LZX.maxMatchLength {
                    let lengthHeader = length &- LZX.minMatchLength
                    row[lengthHeader] = lengthHeader < LZX.primaryLengthCount
                        ? mainCost[header &+ lengthHeader]
                        : mainCost[header &+ LZX.primaryLengthCount] &+ lengthCost[lengthHeader &- LZX.primaryLengthCount]
                }
            }

            for i in 0..<blockLength {
                let base = pathCost[i]
                let position = blockStart &+ i
                let queue = pathQueue + i &* 3
                if i > 0 { Self.settleQueue(at: i, pathItem: pathItem, pathQueue: pathQueue) }
                let here = data + position
                relax(i &+ 1, base &+ mainCost[Int(here[0])], UInt32(here[0]))
                var m = Int(cacheStart[i])
                let end = Int(cacheStart[i &+ 1])
                let maxLength = min(LZX.maxMatchLength, blockLength &- i)

                // Each length is priced once, with the cheapest-looking way to reach it: the
                // most recent offset, then the other two, then explicit offsets nearest first
                // (the cache holds them in increasing length, each one farther back). Repeat
                // offsets are tried even where the match finder found nothing or skipped the
                // position (inside a long match): leaving them out there saved 6% of the time
                // and cost 0.6% of size on /usr/share/doc's text.
                var nextLength = LZX.minMatchLength
                for r in 0..<3 {
                    let offset = Int(queue[r])
                    guard offset <= position, nextLength <= maxLength else { continue }
                    let there = here - offset
                    guard there[0] == here[0] && there[1] == here[1] else { continue }
                    let length = MatchFinding.commonLength(here, there, from: 2, limit: maxLength)
                    guard length >= nextLength else { continue }
                    let row = matchCost + (r &* LZX.lengthCount &- LZX.minMatchLength)
                    var l = length >= nice ? length : nextLength
                    while l <= length {
                        relax(i &+ l, base &+ row[l], LZXItem.match(length: l, code: r))
                        l &+= 1
                        if l > everyLengthUpTo && l < length { l = length }
                    }
                    nextLength = length &+ 1
                }

                while m < end {
                    let length = Int(cacheLength[m])
                    let offset = Int(cacheOffset[m])
                    m &+= 1
                    if length < nextLength { continue }
                    let adjusted = offset &+ LZX.offsetAdjustment
                    let slot = LZXItem.slot(adjustedOffset: adjusted)
                    let extra = LZX.extraBits(slot: slot)
                    let offsetCost = extra >= 3
                        ? UInt32(truncatingIfNeeded: extra &- 3) &+ alignedCost[adjusted & 7]
                        : UInt32(truncatingIfNeeded: extra)
                    let matchBase = base &+ offsetCost
                    let row = matchCost + (slot &* LZX.lengthCount &- LZX.minMatchLength)
                    var l = max(nextLength, 3)
                    if length >= nice && l < length { l = length }
                    while l <= length {
                        relax(i &+ l, matchBase &+ row[l], LZXItem.match(length: l, code: adjusted))
                        l &+= 1
                        if l > everyLengthUpTo && l < length { l = length }
                    }
                    nextLength = length &+ 1
                }
            }
        }
        }
        }

        // Walk back from the block's end, then move the items to the front.
        let items = state.items
        var slot = blockLength
        var position = blockLength
        while position > 0 {
            let item = pathItem[position]
            let length = LZXItem.length(item)
            position &-= length == 0 ? 1 : length
            slot &-= 1
            items[slot] = item
        }
        let itemCount = blockLength &- slot
        if slot > 0 { items.update(from: items + slot, count: itemCount) }
        Self.settleQueue(at: blockLength, pathItem: pathItem, pathQueue: pathQueue)
        let endQueue = pathQueue + blockLength &* 3
        r0 = Int(endQueue[0])
        r1 = Int(endQueue[1])
        r2 = Int(endQueue[2])
        return itemCount
    }

    /// The recent-offset queue at block position `i` (> 0) of a minimum-cost pass: the queue
    /// where its final item starts, updated by that item.
    @inline(__always)
    private static func settleQueue(at i: Int, pathItem: UnsafeMutablePointer<UInt32>, pathQueue: UnsafeMutablePointer<Int32>) {
        let queue = pathQueue + i &* 3
        let item = pathItem[i]
        let length = LZXItem.length(item)
        let from = pathQueue + (i &- (length == 0 ? 1 : length)) &* 3
        switch length == 0 ? 0 : LZXItem.code(item) {
        case 0: (queue[0], queue[1], queue[2]) = (from[0], from[1], from[2])
        case 1: (queue[0], queue[1], queue[2]) = (from[1], from[0], from[2])
        case 2: (queue[0], queue[1], queue[2]) = (from[2], from[1], from[0])
        case let code: (queue[0], queue[1], queue[2]) = (Int32(truncatingIfNeeded: code &- LZX.offsetAdjustment), from[0], from[1])
        }
    }

    // MARK: - Costs

    private func setDefaultCosts() {
        for symbol in 0..<LZX.literalCount { state.mainCost[symbol] = 8 }
        for symbol in LZX.literalCount..<mainSymbolCount {
            let slot = (symbol &- LZX.literalCount) &>> 3
            state.mainCost[symbol] = slot < 3 ? 7 : 9
        }
        for symbol in 0..<LZX.lengthSymbolCount { state.lengthCost[symbol] = 7 }
        for symbol in 0..<LZX.alignedSymbolCount { state.alignedCost[symbol] = 3 }
    }

    /// Costs from Huffman codes built for the frequencies of the parse in `state.items`.
    private mutating func setCostsFromStatistics(itemCount: Int) {
        countFrequencies(itemCount: itemCount)
        buildLengths()
        setCostsFromLengths(aligned: alignedPays())
    }

    /// Whether an aligned offset block beats a verbatim one for the current frequencies and
    /// lengths: the aligned code (plus its 24-bit description) against 3 plain bits per use.
    private func alignedPays() -> Bool {
        var uses = 0
        var bits = 8 * 3
        for symbol in 0..<LZX.alignedSymbolCount {
            uses &+= Int(state.alignedFrequencies[symbol])
            bits &+= Int(state.alignedFrequencies[symbol]) &* Int(state.alignedLengths[symbol])
        }
        return uses > 0 && bits < 3 * uses
    }

    private func setCostsFromLengths(aligned: Bool) {
        for symbol in 0..<mainSymbolCount {
            let length = state.mainLengths[symbol]
            state.mainCost[symbol] = length == 0 ? Self.unusedMainCost : UInt32(length)
        }
        for symbol in 0..<LZX.lengthSymbolCount {
            let length = state.lengthLengths[symbol]
            state.lengthCost[symbol] = length == 0 ? Self.unusedLengthCost : UInt32(length)
        }
        for symbol in 0..<LZX.alignedSymbolCount {
            let length = state.alignedLengths[symbol]
            state.alignedCost[symbol] = aligned && length != 0 ? UInt32(length) : 3
        }
    }

    private func countFrequencies(itemCount: Int) {
        for i in 0..<mainSymbolCount { state.mainFrequencies[i] = 0 }
        for i in 0..<LZX.lengthSymbolCount { state.lengthFrequencies[i] = 0 }
        for i in 0..<LZX.alignedSymbolCount { state.alignedFrequencies[i] = 0 }
        let items = state.items
        state.mainFrequencies.withUnsafeMutableBufferPointer { main in
        state.lengthFrequencies.withUnsafeMutableBufferPointer { lengths in
        state.alignedFrequencies.withUnsafeMutableBufferPointer { aligned in
            for index in 0..<itemCount {
                let item = items[index]
                let length = LZXItem.length(item)
                if length == 0 {
                    main[Int(item)] &+= 1
                    continue
                }
                let code = LZXItem.code(item)
                let slot = code < 3 ? code : LZXItem.slot(adjustedOffset: code)
                let header = min(length &- LZX.minMatchLength, LZX.primaryLengthCount)
                main[LZX.literalCount &+ slot &<< 3 &+ header] &+= 1
                if header == LZX.primaryLengthCount { lengths[length &- LZX.minMatchLength &- LZX.primaryLengthCount] &+= 1 }
                if LZX.extraBits(slot: slot) >= 3 { aligned[code & 7] &+= 1 }
            }
        }
        }
        }
    }

    /// Main, length and aligned code lengths for the current frequencies. An unused length code
    /// stays empty (all zero); the aligned code is built only when some offset uses it.
    private func buildLengths() {
        state.codeBuilder.buildLengths(frequencies: state.mainFrequencies, maxLength: LZX.maxMainCodewordLength, into: &state.mainLengths)
        if state.lengthFrequencies.contains(where: { $0 != 0 }) {
            state.codeBuilder.buildLengths(frequencies: state.lengthFrequencies, maxLength: LZX.maxLengthCodewordLength, into: &state.lengthLengths)
        } else {
            for i in 0..<LZX.lengthSymbolCount { state.lengthLengths[i] = 0 }
        }
        if state.alignedFrequencies.contains(where: { $0 != 0 }) {
            state.codeBuilder.buildLengths(frequencies: state.alignedFrequencies, maxLength: LZX.maxAlignedCodewordLength, into: &state.alignedLengths)
        } else {
            for i in 0..<LZX.alignedSymbolCount { state.alignedLengths[i] = 0 }
        }
    }

    // MARK: - Writing

    private mutating func writeBlock(itemCount: Int, size: Int) {
        countFrequencies(itemCount: itemCount)
        buildLengths()

        let aligned = alignedPays()

        HuffmanCodeBuilder.assignCodes(lengths: state.mainLengths, maxLength: LZX.maxMainCodewordLength, into: &state.mainCodes)
        HuffmanCodeBuilder.assignCodes(lengths: state.lengthLengths, maxLength: LZX.maxLengthCodewordLength, into: &state.lengthCodes)
        HuffmanCodeBuilder.assignCodes(lengths: state.alignedLengths, maxLength: LZX.maxAlignedCodewordLength, into: &state.alignedCodes)

        writer.write(aligned ? 2 : 1, 3)
        if size == LZX.defaultBlockSize {
            writer.write(1, 1)
        } else {
            writer.write(0, 1)
            writer.write(UInt32(truncatingIfNeeded: size), windowOrder >= 16 ? 24 : 16)
        }
        if aligned {
            for symbol in 0..<LZX.alignedSymbolCount { writer.write(UInt32(state.alignedLengths[symbol]), 3) }
        }
        writeCodeLengths(main: true, from: 0, to: LZX.literalCount)
        writeCodeLengths(main: true, from: LZX.literalCount, to: mainSymbolCount)
        writeCodeLengths(main: false, from: 0, to: LZX.lengthSymbolCount)
        state.previousMainLengths = state.mainLengths
        state.previousLengthLengths = state.lengthLengths

        writeItems(itemCount: itemCount, aligned: aligned)
        // The next block's first pass starts from this block's codes.
        setCostsFromLengths(aligned: aligned)
    }

    /// Writes a pretree and, with it, the lengths `from..<to` of the main or length code as
    /// changes against the previous block's.
    private mutating func writeCodeLengths(main: Bool, from start: Int, to end: Int) {
        let new = main ? state.mainLengths : state.lengthLengths
        let old = main ? state.previousMainLengths : state.previousLengthLengths
        @inline(__always) func delta(_ index: Int) -> UInt32 {
            UInt32((Int(old[index]) - Int(new[index]) + 17) % 17)
        }
        // Items: symbol in bits 0...4, its extra bits from bit 5 (up to 5 bits), and for symbol
        // 19 the length's symbol from bit 16.
        state.pretreeItems.removeAll(keepingCapacity: true)
        var index = start
        while index < end {
            let value = new[index]
            var run = 1
            while index + run < end && new[index + run] == value { run += 1 }
            if value == 0 {
                while run >= 20 {
                    let take = min(run, 51)
                    state.pretreeItems.append(18 | UInt32(take - 20) << 5)
                    index += take
                    run -= take
                }
                if run >= 4 {
                    let take = min(run, 19)
                    state.pretreeItems.append(17 | UInt32(take - 4) << 5)
                    index += take
                    run -= take
                }
            } else {
                while run >= 4 {
                    let take = min(run, 5)
                    state.pretreeItems.append(19 | UInt32(take - 4) << 5 | delta(index) << 16)
                    index += take
                    run -= take
                }
            }
            while run > 0 {
                state.pretreeItems.append(delta(index))
                index += 1
                run -= 1
            }
        }
        for i in 0..<LZX.pretreeSymbolCount { state.pretreeFrequencies[i] = 0 }
        for item in state.pretreeItems {
            state.pretreeFrequencies[Int(item & 31)] += 1
            if item & 31 == 19 { state.pretreeFrequencies[Int(item >> 16)] += 1 }
        }
        state.codeBuilder.buildLengths(frequencies: state.pretreeFrequencies, maxLength: LZX.maxPretreeCodewordLength, into: &state.pretreeLengths)
        HuffmanCodeBuilder.assignCodes(lengths: state.pretreeLengths, maxLength: LZX.maxPretreeCodewordLength, into: &state.pretreeCodes)
        for symbol in 0..<LZX.pretreeSymbolCount { writer.write(UInt32(state.pretreeLengths[symbol]), 4) }
        for item in state.pretreeItems {
            let symbol = Int(item & 31)
            writer.write(state.pretreeCodes[symbol], Int(state.pretreeLengths[symbol]))
            switch symbol {
            case 17: writer.write((item >> 5) & 0xF, 4)
            case 18: writer.write((item >> 5) & 0x1F, 5)
            case 19:
                writer.write((item >> 5) & 1, 1)
                let valueSymbol = Int(item >> 16)
                writer.write(state.pretreeCodes[valueSymbol], Int(state.pretreeLengths[valueSymbol]))
            default: break
            }
        }
    }

    private mutating func writeItems(itemCount: Int, aligned: Bool) {
        let items = state.items
        var w = writer
        state.mainCodes.withUnsafeBufferPointer { mainCodes in
        state.mainLengths.withUnsafeBufferPointer { mainLengths in
        state.lengthCodes.withUnsafeBufferPointer { lengthCodes in
        state.lengthLengths.withUnsafeBufferPointer { lengthLengths in
        state.alignedCodes.withUnsafeBufferPointer { alignedCodes in
        state.alignedLengths.withUnsafeBufferPointer { alignedLengths in
        LZX.slotBase.withUnsafeBufferPointer { slotBase in
            for index in 0..<itemCount {
                let item = items[index]
                let length = LZXItem.length(item)
                if length == 0 {
                    w.write(mainCodes[Int(item)], Int(mainLengths[Int(item)]))
                    continue
                }
                let code = LZXItem.code(item)
                let slot = code < 3 ? code : LZXItem.slot(adjustedOffset: code)
                let header = min(length &- LZX.minMatchLength, LZX.primaryLengthCount)
                let symbol = LZX.literalCount &+ slot &<< 3 &+ header
                w.write(mainCodes[symbol], Int(mainLengths[symbol]))
                if header == LZX.primaryLengthCount {
                    let lengthSymbol = length &- LZX.minMatchLength &- LZX.primaryLengthCount
                    w.write(lengthCodes[lengthSymbol], Int(lengthLengths[lengthSymbol]))
                }
                let extra = LZX.extraBits(slot: slot)
                if extra == 0 { continue }
                let value = UInt32(truncatingIfNeeded: code &- slotBase[slot])
                if aligned && extra >= 3 {
                    w.write(value &>> 3, extra &- 3)
                    let low = Int(value & 7)
                    w.write(alignedCodes[low], Int(alignedLengths[low]))
                } else {
                    w.write(value, extra)
                }
            }
        }
        }
        }
        }
        }
        }
        }
        writer = w
    }
}
