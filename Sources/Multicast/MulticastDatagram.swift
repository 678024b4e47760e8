/// The datagrams of an Imprint multicast session. Our own protocol: udpcast (what FOG uses)
/// needs every receiver present when a transfer starts and stalls all of them for the slowest;
/// Imprint's sessions must take late joiners, let a lossy or slow receiver catch up on a later
/// pass, and never wait for a dead one. Facts a reader needs:
///
/// - Every datagram starts with a 32-byte header, little-endian:
///   `0` magic `IMC1` · `4` kind (1 data, 2 announce, 3 heartbeat) · `5` flags (0) ·
///   `6` header size (32) · `8` session id (UInt64, the same in every datagram of a session).
/// - **data** (sender → group): `16` block (UInt32) · `20` fragment (UInt16) · `22` fragments in
///   the block (UInt16) · `24` pass (UInt32) · `28` payload length (UInt16) · `30` 0; then the
///   payload: bytes `fragment × 1408 ..< +length` of the block. 32 + 1408 bytes plus IP and UDP
///   headers fill a 1500-byte Ethernet frame exactly (no IP fragmentation).
/// - **announce** (sender → group, 4 a second while it waits to start or nobody needs
///   anything): `16` state (0 waiting, 1 sending, 2 idle) · `20` block count (UInt32) ·
///   `24` file size (UInt64). It tells a receiver the sender is there and where to send heartbeats.
/// - **heartbeat** (receiver → the sender's address, unicast, twice a second): `16` receiver id
///   (UInt64) · `24` state (0 waiting, 1 receiving, 2 done, 3 leaving) · `28` bitmap length in
///   bytes (UInt16) · `30` blocks needed (UInt16); then the bitmap of the blocks the receiver
///   still needs, bit `b % 8` of byte `b / 8` for block `b`. 8192 blocks fit one datagram.
/// A datagram that is short, of another session, or inconsistent with the manifest is ignored;
/// the data it carries is used only once its whole block matches the manifest's SHA-256.
public enum MulticastDatagram: Equatable, Sendable {
    case data(Data)
    case announce(Announce)
    case heartbeat(Heartbeat)

    public static let headerSize = 32
    public static let fragmentSize = 1408
    public static let maximumSize = headerSize + fragmentSize
    /// The most blocks a session's file may have: a heartbeat's bitmap fits one datagram.
    public static let maximumBlocks = 8192
    static let magic: [UInt8] = Array("IMC1".utf8)

    public struct Data: Equatable, Sendable {
        public var session: UInt64
        public var block: Int
        public var fragment: Int
        public var fragments: Int
        public var pass: Int
        /// Where the payload is in the datagram it was parsed from.
        public var payloadRange: Range<Int>
    }

    public struct Announce: Equatable, Sendable {
        public enum State: UInt8, Sendable { case waiting = 0, sending = 1, idle = 2 }
        public var session: UInt64
        public var state: State
        public var blockCount: Int
        public var fileSize: UInt64
    }

    public struct Heartbeat: Equatable, Sendable {
        public enum State: UInt8, Sendable { case waiting = 0, receiving = 1, done = 2, leaving = 3 }
        public var session: UInt64
        public var receiver: UInt64
        public var state: State
        public var blocksNeeded: Int
        public var needed: [UInt8]

        public func needs(_ block: Int) -> Bool {
            let byte = block >> 3
            return byte < needed.count && needed[byte] & (1 << UInt8(block & 7)) != 0
        }
    }

    public var session: UInt64 {
        switch self {
        case let .data(d): return d.session
        case let .announce(a): return a.session
        case let .heartbeat(h): return h.session
        }
    }

    /// Parses a received datagram; nil for anything that is not a well-formed Imprint datagram
    /// (a network carries strangers' packets too: they are ignored, never an error).
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> MulticastDatagram? {
        guard bytes.count >= headerSize, bytes[0] == magic[0], bytes[1] == magic[1], bytes[2] == magic[2], bytes[3] == magic[3],
              bytes[5] == 0, readUInt16(bytes, 6) == UInt16(headerSize) else { return nil }
        let session = readUInt64(bytes, 8)
        switch bytes[4] {
        case 1:
            let block = Int(readUInt32(bytes, 16)), fragment = Int(readUInt16(bytes, 20)), fragments = Int(readUInt16(bytes, 22))
            let length = Int(readUInt16(bytes, 28))
            guard fragments > 0, fragment < fragments, length > 0, length <= fragmentSize,
                  headerSize + length == bytes.count, block < maximumBlocks else { return nil }
            return .data(Data(session: session, block: block, fragment: fragment, fragments: fragments,
                              pass: Int(readUInt32(bytes, 24)), payloadRange: headerSize..<(headerSize + length)))
        case 2:
            guard bytes.count == headerSize, let state = Announce.State(rawValue: bytes[16]) else { return nil }
            let count = Int(readUInt32(bytes, 20))
            guard count <= maximumBlocks else { return nil }
            return .announce(Announce(session: session, state: state, blockCount: count, fileSize: readUInt64(bytes, 24)))
        case 3:
            guard let state = Heartbeat.State(rawValue: bytes[24]) else { return nil }
            let length = Int(readUInt16(bytes, 28))
            guard length <= maximumBlocks / 8, bytes.count == headerSize + length else { return nil }
            return .heartbeat(Heartbeat(session: session, receiver: readUInt64(bytes, 16), state: state,
                                        blocksNeeded: Int(readUInt16(bytes, 30)), needed: Array(bytes[headerSize...])))
        default:
            return nil
        }
    }

    /// Writes a data datagram's header in front of its payload (already at `headerSize`).
    static func writeDataHeader(_ buffer: UnsafeMutableRawBufferPointer, session: UInt64, block: Int, fragment: Int,
                                fragments: Int, pass: Int, length: Int) {
        writeCommon(buffer, kind: 1, session: session)
        writeUInt32(buffer, 16, UInt32(block))
        writeUInt16(buffer, 20, UInt16(fragment))
        writeUInt16(buffer, 22, UInt16(fragments))
        writeUInt32(buffer, 24, UInt32(truncatingIfNeeded: pass))
        writeUInt16(buffer, 28, UInt16(length))
        writeUInt16(buffer, 30, 0)
    }

    /// The bytes of an announce or a heartbeat (data datagrams are written in place by the sender).
    public func encoded() -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: Self.headerSize)
        switch self {
        case let .data(d):
            bytes.withUnsafeMutableBytes {
                Self.writeDataHeader($0, session: d.session, block: d.block, fragment: d.fragment, fragments: d.fragments,
                                     pass: d.pass, length: d.payloadRange.count)
            }
        case let .announce(a):
            bytes.withUnsafeMutableBytes {
                Self.writeCommon($0, kind: 2, session: a.session)
                $0[16] = a.state.rawValue
                Self.writeUInt32($0, 20, UInt32(a.blockCount))
                Self.writeUInt64($0, 24, a.fileSize)
            }
        case let .heartbeat(h):
            bytes.withUnsafeMutableBytes {
                Self.writeCommon($0, kind: 3, session: h.session)
                Self.writeUInt64($0, 16, h.receiver)
                $0[24] = h.state.rawValue
                Self.writeUInt16($0, 28, UInt16(h.needed.count))
                Self.writeUInt16($0, 30, UInt16(min(h.blocksNeeded, Int(UInt16.max))))
            }
            bytes += h.needed
        }
        return bytes
    }

    private static func writeCommon(_ buffer: UnsafeMutableRawBufferPointer, kind: UInt8, session: UInt64) {
        for i in 0..<4 { buffer[i] = magic[i] }
        buffer[4] = kind
        buffer[5] = 0
        writeUInt16(buffer, 6, UInt16(headerSize))
        writeUInt64(buffer, 8, session)
    }

    static func readUInt16(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt16 { UInt16(b[at]) | UInt16(b[at + 1]) << 8 }
    static func readUInt32(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt32 {
        UInt32(readUInt16(b, at)) | UInt32(readUInt16(b, at + 2)) << 16
    }
    static func readUInt64(_ b: UnsafeRawBufferPointer, _ at: Int) -> UInt64 {
        UInt64(readUInt32(b, at)) | UInt64(readUInt32(b, at + 4)) << 32
    }
    static func writeUInt16(_ b: UnsafeMutableRawBufferPointer, _ at: Int, _ v: UInt16) {
        b[at] = UInt8(truncatingIfNeeded: v); b[at + 1] = UInt8(truncatingIfNeeded: v >> 8)
    }
    static func writeUInt32(_ b: UnsafeMutableRawBufferPointer, _ at: Int, _ v: UInt32) {
        writeUInt16(b, at, UInt16(truncatingIfNeeded: v)); writeUInt16(b, at + 2, UInt16(truncatingIfNeeded: v >> 16))
    }
    static func writeUInt64(_ b: UnsafeMutableRawBufferPointer, _ at: Int, _ v: UInt64) {
        writeUInt32(b, at, UInt32(truncatingIfNeeded: v)); writeUInt32(b, at + 4, UInt32(truncatingIfNeeded: v >> 32))
    }
}

/// A session id as the descriptor and the dashboard write it: 16 lower-case hex digits.
public func sessionIDText(_ id: UInt64) -> String {
    let hex = String(id, radix: 16)
    return String(repeating: "0", count: max(0, 16 - hex.count)) + hex
}

/// The id `sessionIDText` wrote, or nil for anything else.
public func parseSessionID(_ text: String) -> UInt64? {
    guard text.count == 16, text.allSatisfy({ $0.isHexDigit }) else { return nil }
    return UInt64(text, radix: 16)
}
