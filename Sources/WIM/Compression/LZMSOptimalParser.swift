// The `.normal` level's parse: a cost-based ("near-optimal") parse of the chunk in blocks.
//
// Within a block of up to `blockLength` positions every position is searched, and a shortest
// path over the positions is found: from each position a literal, every length of every repeat
// match, and every length of the explicit matches the chain finds (nearest offset for each
// length) lead further, priced by the adaptive codes' current codeword lengths and the
// decisions' current probabilities. Each position keeps the repeat queue of its cheapest path,
// so repeat matches are priced with the offsets that path would really have. A match of
// `niceLength` or more ends the block and is taken as it is.

/// One position of the block's shortest-path search.
struct LZMSParseNode {
    /// Cheapest cost (x16 bits) from the block start to here; `Int.max` until reached.
    var cost = Int.max
    /// Where the last item of that path starts (block-relative) and what it is.
    var from: Int32 = 0
    /// -2: literal, -1: explicit match, 0...2: repeat entry.
    var repeatIndex: Int32 = -2
    var offset = 0
    /// The repeat queue after that path (set when the position is processed).
    var queue = LZMSRepeatQueue(1, 2, 3, 4)
}

extension LZMSParser {
    static var blockLength: Int { 4096 }
    /// Chunks this large (solid ones) have their already-compressed stretches left unsearched.
    static var noiseSearchMinimum: Int { 1 << 20 }
    /// The shortest copy taken inside already-compressed data.
    static var noiseMatchMinimum: Int { 32 }

    /// Parses and codes the whole chunk with the cost-based parse; returns the stream's size, or
    /// nil when it does not come in under `sizeLimit` (or its buffer).
    mutating func runOptimal(sizeLimit: Int?) -> Int? {
        let limit = sizeLimit ?? Int.max
        let nice = settings.niceLength
        let nodeCount = Self.blockLength + nice + 2
        let nodes = UnsafeMutablePointer<LZMSParseNode>.allocate(capacity: nodeCount)
        nodes.initialize(repeating: LZMSParseNode(), count: nodeCount)
        let matches = UnsafeMutablePointer<(length: Int, offset: Int)>.allocate(capacity: settings.maxDepth + 1)
        let lengthCosts = UnsafeMutablePointer<Int>.allocate(capacity: nice + 1)
        let literalCosts = UnsafeMutablePointer<Int>.allocate(capacity: 256)
        let path = UnsafeMutablePointer<Int32>.allocate(capacity: nodeCount)
        // Stretches that look already compressed, in a large (solid) chunk: see below.
        var anchorBits = 0
        if count >= Self.noiseSearchMinimum {
            anchorBits = 12
            while anchorBits < 20 && (1 << anchorBits) < count / 8 { anchorBits += 1 }
        }
        let anchors = UnsafeMutablePointer<Int32>.allocate(capacity: 1 << anchorBits)
        anchors.initialize(repeating: -1, count: 1 << anchorBits)
        defer {
            anchors.deallocate()
            nodes.deinitialize(count: nodeCount)
            nodes.deallocate()
            matches.deallocate()
            lengthCosts.deallocate()
            literalCosts.deallocate()
            path.deallocate()
        }

        // Hoisted out of the item encoder so the search loop reads them directly (calling its
        // methods from here made the optimizer copy the whole encoder each time).
        let offsetCodeLengths = items.offsets.lengths
        let offsetSlots = items.offsetSlots
        let offsetSlotOfSmall = items.offsetSlotOfSmall
        let offsetSlotCount = items.offsetSlotCount

        var position = 0
        while position < count {
            guard items.bytesSoFar < limit else { return nil }
            // A block of a large chunk that looks already compressed (a .gz, .cab or .png in a
            // solid chunk: `IncompressibleData`) gets no cost-based parse and stays out of the
            // trees, whose walks over it cost a cache miss per node and found nothing. It goes
            // as literals, but for copies of earlier such data (compressed files of one source
            // share long stretches: leaving those out cost 4% on /usr/share/doc): every 8th
            // position's next 8 bytes are kept in a table of anchors, and at every position a
            // copy of at least `noiseMatchMinimum` bytes reaches an anchor within its first 8.
            if anchorBits > 0 && count &- position >= Self.blockLength
                && IncompressibleData.isLikely(data + position, count: Self.blockLength) {
                insert(upTo: position)
                let stop = position &+ Self.blockLength
                while position < stop {
                    guard items.hasRoom else { return nil }
                    if count &- position >= 8 {
                        let key = UnsafeRawPointer(data + position).loadUnaligned(as: UInt64.self)
                        let slot = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) &>> UInt64(64 &- anchorBits))
                        let earlier = Int(anchors[slot])
                        if position & 7 == 0 { anchors[slot] = Int32(truncatingIfNeeded: position) }
                        if earlier >= 0 && UnsafeRawPointer(data + earlier).loadUnaligned(as: UInt64.self) == key {
                            let length = LZMSParser.matchLength(data, position, earlier, limit: count &- position)
                            if length >= Self.noiseMatchMinimum {
                                items.match(at: position, length: length, offset: position &- earlier, repeatIndex: -1)
                                position &+= length
                                continue
                            }
                        }
                    }
                    items.literal(data[position])
                    position &+= 1
                }
                inserted = position
                continue
            }
            // Prices for this block, from the codes and models as they stand.
            let decisions = items.decisionCosts()
            for byte in 0..<256 {
                literalCosts[byte] = Int(items.literals.lengths[byte]) &<< 4 &+ decisions.literal
            }
            for length in 1...nice { lengthCosts[length] = items.lengthCost(length) }
            let repeatCosts = decisions.repeats
            let explicitCost = decisions.explicit

            let blockStart = position
            let blockEnd = min(Self.blockLength, count &- blockStart)
            nodes[0].cost = 0
            nodes[0].queue = items.queue
            var reached = 0       // nodes[1...reached] are initialised for this block
            var end = blockEnd
            var long: LZMSMatchChoice? = nil

            @inline(__always)
            func relax(_ target: Int, _ cost: Int, from: Int, repeatIndex: Int, offset: Int) {
                while reached < target {
                    reached &+= 1
                    nodes[reached].cost = Int.max
                }
                if cost < nodes[target].cost {
                    nodes[target].cost = cost
                    nodes[target].from = Int32(truncatingIfNeeded: from)
                    nodes[target].repeatIndex = Int32(truncatingIfNeeded: repeatIndex)
                    nodes[target].offset = offset
                }
            }

            var i = 0
            while i < end {
                let here = blockStart &+ i
                if i > 0 {
                    let from = Int(nodes[i].from)
                    var queue = nodes[from].queue
                    let kind = Int(nodes[i].repeatIndex)
                    if kind != -2 {
                        queue.beginMatch(at: blockStart &+ from)
                        if kind >= 0 { _ = queue.take(kind) }
                        queue.settle(nodes[i].offset)
                        queue.lastMatchEnd = here
                    }
                    nodes[i].queue = queue
                }
                let base = nodes[i].cost
                relax(i &+ 1, base &+ literalCosts[Int(data[here])], from: i, repeatIndex: -2, offset: 0)

                let available = count &- here
                if here == 0 || available < 2 {
                    insert(upTo: here &+ 1)
                    i &+= 1
                    continue
                }
                // Repeat matches, with this path's queue.
                var queue = nodes[i].queue
                queue.beginMatch(at: here)
                for index in 0..<3 {
                    let offset = index == 0 ? queue.slot0 : index == 1 ? queue.slot1 : queue.slot2
                    if offset > here { continue }
                    let length = LZMSParser.matchLength(data, here, here &- offset, limit: available)
                    if length < 2 { continue }
                    if length >= nice {
                        long = LZMSMatchChoice(length: length, offset: offset, repeatIndex: index, benefit: 0)
                        break
                    }
                    let matchBase = base &+ (index == 0 ? repeatCosts.0 : index == 1 ? repeatCosts.1 : repeatCosts.2)
                    for l in 2...length {
                        relax(i &+ l, matchBase &+ lengthCosts[l], from: i, repeatIndex: index, offset: offset)
                    }
                }
                if long != nil {
                    end = i
                    break
                }
                if available < 3 {
                    insert(upTo: here &+ 1)
                    i &+= 1
                    continue
                }
                // Explicit matches: the nearest offset for each longer length.
                let found = findMatches(at: here, limit: available, into: matches)
                var previousLength = 2
                for m in 0..<found {
                    let (length, offset) = matches[m]
                    if length >= nice {
                        long = LZMSMatchChoice(length: length, offset: offset, repeatIndex: -1, benefit: 0)
                        break
                    }
                    let slot = offset < LZMSSlotTables.directOffsets ? Int(offsetSlotOfSmall[offset])
                        : LZMSSlotTables.slot(offset, offsetSlots, count: offsetSlotCount)
                    let offsetBits = Int(offsetCodeLengths[slot]) &+ Int(offsetSlots[slot] &>> LZMSFormat.slotExtraBitsShift)
                    let matchBase = base &+ explicitCost &+ offsetBits &<< 4
                    for l in (previousLength &+ 1)...length {
                        relax(i &+ l, matchBase &+ lengthCosts[l], from: i, repeatIndex: -1, offset: offset)
                    }
                    previousLength = length
                }
                if long != nil {
                    end = i
                    break
                }
                i &+= 1
            }

            // Walk back from the end of the block, then code the path front to back.
            var steps = 0
            var node = end
            while node > 0 {
                path[steps] = Int32(truncatingIfNeeded: node)
                steps &+= 1
                node = Int(nodes[node].from)
            }
            var at = 0
            while steps > 0 {
                guard items.hasRoom else { return nil }
                steps &-= 1
                let target = Int(path[steps])
                let kind = Int(nodes[target].repeatIndex)
                if kind == -2 {
                    items.literal(data[blockStart &+ at])
                } else {
                    items.match(at: blockStart &+ at, length: target &- at, offset: nodes[target].offset, repeatIndex: kind)
                }
                at = target
            }
            position = blockStart &+ end
            if let long {
                guard items.hasRoom else { return nil }
                items.match(at: position, length: long.length, offset: long.offset, repeatIndex: long.repeatIndex)
                position &+= long.length
            }
            insert(upTo: position)
        }
        guard items.hasRoom else { return nil }
        let size = items.finish()
        return size < limit ? size : nil
    }

    /// The explicit matches at `position` (which must not be in the chains yet; this inserts
    /// it): for each length found, the nearest offset giving it, in increasing length; lengths
    /// of 3 or more, at most `limit`.
    @inline(__always)
    mutating func findMatches(at position: Int, limit: Int, into matches: UnsafeMutablePointer<(length: Int, offset: Int)>) -> Int {
        insert(upTo: position)
        if settings.optimal {
            inserted = position &+ 1
            return treeWalk(position, limit: limit, record: true, into: matches)
        }
        let (near3, chainHead) = link(position)
        var candidate = chainHead
        inserted = position &+ 1
        var longest = 2
        var found = 0
        var depth = settings.maxDepth
        let nice = min(settings.niceLength, limit)
        if near3 >= 0 && data[near3] == data[position] && data[near3 &+ 1] == data[position &+ 1] && data[near3 &+ 2] == data[position &+ 2] {
            longest = LZMSParser.matchLength(data, position, near3, limit: limit)
            matches[found] = (longest, position &- near3)
            found &+= 1
            if longest >= nice { return found }
        }
        // The chain holds 4-byte matches only.
        guard limit >= 4 else { return found }
        let word = prefix(position)
        while candidate >= 0 && depth > 0 {
            if data[candidate &+ longest] == data[position &+ longest] && prefix(candidate) == word {
                let length = LZMSParser.matchLength(data, position, candidate, limit: limit)
                if length > longest {
                    longest = length
                    matches[found] = (length, position &- candidate)
                    found &+= 1
                    if length >= nice { break }
                }
            }
            candidate = Int(previous[candidate])
            depth &-= 1
        }
        return found
    }
}
