// Fuzz target: what reaches a multicast receiver or sender from the network — a datagram of
// any kind — and a block manifest as fetched. Any input must be ignored or refused with an
// error naming the offset, never crash; what parses must encode back to the same bytes (an
// announce or a heartbeat) and a manifest must decode what it encodes. Compiled into the
// Multicast module by scripts/fuzz.
public func fuzzMulticast(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeRawBufferPointer(start: data, count: size)
    if let datagram = MulticastDatagram.parse(bytes) {
        switch datagram {
        case let .data(d):
            precondition(d.payloadRange.upperBound == size && d.fragment < d.fragments)
        case .announce, .heartbeat:
            let again = datagram.encoded()
            precondition(again.withUnsafeBytes { MulticastDatagram.parse($0) } == datagram)
        }
    }
    if let manifest = try? BlockManifest(decoding: Array(bytes), name: "fuzz input") {
        precondition(manifest.encoded() == Array(bytes))
        precondition(manifest.blockCount == (0..<manifest.blockCount).count)
        _ = manifest.fragments(of: manifest.blockCount - 1)
    }
    return 0
}
