import CLibCrypto

/// A SHA-1 message digest: how a WIM names every blob. Stored as three integers so hashing and
/// comparing it in the blob table is cheap.
public struct SHA1Digest: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var high: UInt64
    public var middle: UInt64
    public var low: UInt32

    public static let zero = SHA1Digest(high: 0, middle: 0, low: 0)

    public init(high: UInt64, middle: UInt64, low: UInt32) {
        self.high = high
        self.middle = middle
        self.low = low
    }

    /// Reads 20 bytes in their stored order.
    public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= 20)
        var h: UInt64 = 0, m: UInt64 = 0, l: UInt32 = 0
        for i in 0..<8 { h = h << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { m = m << 8 | UInt64(bytes[i]) }
        for i in 16..<20 { l = l << 8 | UInt32(bytes[i]) }
        self.init(high: h, middle: m, low: l)
    }

    public init(bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { SHA1Digest(bytes: $0) }
    }

    public var isZero: Bool { high == 0 && middle == 0 && low == 0 }

    public var bytes: [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(20)
        for i in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: high >> UInt64(i))) }
        for i in stride(from: 56, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: middle >> UInt64(i))) }
        for i in stride(from: 24, through: 0, by: -8) { out.append(UInt8(truncatingIfNeeded: low >> UInt32(i))) }
        return out
    }

    public var description: String {
        let digits: [Character] = Array("0123456789abcdef")
        var s = ""
        s.reserveCapacity(40)
        for b in bytes {
            s.append(digits[Int(b >> 4)])
            s.append(digits[Int(b & 15)])
        }
        return s
    }

    public static func < (a: SHA1Digest, b: SHA1Digest) -> Bool {
        (a.high, a.middle, a.low) < (b.high, b.middle, b.low)
    }
}

/// Incremental SHA-1 through libcrypto, which uses the CPU's SHA extensions where present.
public final class SHA1Hasher {
    private let context: OpaquePointer

    public init() {
        guard let ctx = EVP_MD_CTX_new() else { fatalError("out of memory creating a SHA-1 context") }
        context = ctx
        EVP_DigestInit_ex(context, EVP_sha1(), nil)
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ data: UnsafeRawBufferPointer) {
        guard data.count > 0 else { return }
        EVP_DigestUpdate(context, data.baseAddress, data.count)
    }

    public func update(_ data: [UInt8]) {
        data.withUnsafeBytes { update($0) }
    }

    /// Returns the digest and resets the hasher for the next message.
    public func finish() -> SHA1Digest {
        var out = [UInt8](repeating: 0, count: 20)
        var length: UInt32 = 0
        _ = out.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        EVP_DigestInit_ex(context, EVP_sha1(), nil)
        return SHA1Digest(bytes: out)
    }

    public static func digest(_ data: UnsafeRawBufferPointer) -> SHA1Digest {
        let hasher = SHA1Hasher()
        hasher.update(data)
        return hasher.finish()
    }

    public static func digest(_ data: [UInt8]) -> SHA1Digest {
        data.withUnsafeBytes { digest($0) }
    }
}
