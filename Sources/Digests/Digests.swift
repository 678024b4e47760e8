import CLibCrypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// An incremental hash through the system's libcrypto, which uses the CPU's SHA instructions:
/// hashing every blob of a WIM and every byte of a download must not be what limits them. A
/// hasher serves one thread at a time; `SHA1Hasher` and `SHA256Hasher` say what it returns.
public class LibCryptoHasher {
    private let algorithm: OpaquePointer
    private let context: OpaquePointer

    fileprivate init(_ algorithm: OpaquePointer?) {
        // Neither fails but for want of memory, which nothing here could recover from.
        guard let algorithm, let context = EVP_MD_CTX_new() else { fatalError("libcrypto could not create a digest context") }
        self.algorithm = algorithm
        self.context = context
        reset()
    }

    deinit { EVP_MD_CTX_free(context) }

    public final func update(_ data: UnsafeRawBufferPointer) {
        guard !data.isEmpty else { return }
        EVP_DigestUpdate(context, data.baseAddress, data.count)
    }

    public final func update(_ bytes: some ContiguousBytes) { bytes.withUnsafeBytes { update($0) } }

    /// Forgets what was given, as when a download starts over.
    public final func reset() { EVP_DigestInit_ex(context, algorithm, nil) }

    /// The digest of everything given since the last one; the hasher then starts again.
    fileprivate final func finishBytes() -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = digest.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        reset()
        return Array(digest.prefix(Int(length)))
    }
}

/// SHA-1: how a WIM names and checks every blob.
public final class SHA1Hasher: LibCryptoHasher {
    public init() { super.init(EVP_sha1()) }

    public func finish() -> SHA1Digest { SHA1Digest(bytes: finishBytes()) }

    public static func digest(_ bytes: some ContiguousBytes) -> SHA1Digest {
        let hasher = SHA1Hasher()
        hasher.update(bytes)
        return hasher.finish()
    }
}

/// SHA-256: what sequences and indexes promise for every download and image.
public final class SHA256Hasher: LibCryptoHasher {
    public init() { super.init(EVP_sha256()) }

    /// Lower-case hex, as `sha256sum` prints it.
    public func finish() -> String { lowerCaseHex(finishBytes()) }

    /// The 32 bytes of the digest (a block manifest keeps them raw).
    public func finishDigest() -> [UInt8] { finishBytes() }

    public static func hex(of bytes: some ContiguousBytes) -> String {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finish()
    }

    /// Why an open file could not be read to its end: `errno`'s text.
    public struct ReadError: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The SHA-256 of what remains to read from `descriptor` (which stays the caller's),
    /// in 4 MiB reads; `progress` gets the bytes read so far after each.
    public static func hex(reading descriptor: Int32, progress: (UInt64) -> Void = { _ in }) throws(ReadError) -> String {
        let hasher = SHA256Hasher()
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var done: UInt64 = 0
        while true {
            let count = read(descriptor, buffer.baseAddress, buffer.count)
            if count > 0 {
                hasher.update(UnsafeRawBufferPointer(rebasing: buffer[..<count]))
                done += UInt64(count)
                progress(done)
            } else if count == 0 {
                return hasher.finish()
            } else if errno != EINTR {
                throw ReadError(description: "read failed: \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// A SHA-1 digest, stored as three integers so hashing and comparing it in a WIM's blob table
/// (millions of lookups) is cheap.
public struct SHA1Digest: Hashable, Sendable, CustomStringConvertible, Comparable {
    public var high: UInt64
    public var middle: UInt64
    public var low: UInt32

    public static let zero = SHA1Digest(high: 0, middle: 0, low: 0)

    @inlinable public init(high: UInt64, middle: UInt64, low: UInt32) {
        self.high = high
        self.middle = middle
        self.low = low
    }

    /// Reads 20 bytes in their stored order (big-endian, as digests are printed).
    @inlinable public init(bytes: UnsafeRawBufferPointer) {
        precondition(bytes.count >= 20, "a SHA-1 digest is 20 bytes")
        var high: UInt64 = 0, middle: UInt64 = 0, low: UInt32 = 0
        for i in 0..<8 { high = high << 8 | UInt64(bytes[i]) }
        for i in 8..<16 { middle = middle << 8 | UInt64(bytes[i]) }
        for i in 16..<20 { low = low << 8 | UInt32(bytes[i]) }
        self.init(high: high, middle: middle, low: low)
    }

    public init(bytes: [UInt8]) {
        self = bytes.withUnsafeBytes { SHA1Digest(bytes: $0) }
    }

    public var isZero: Bool { high == 0 && middle == 0 && low == 0 }

    public var bytes: [UInt8] {
        Array(high.bigEndianBytes) + Array(middle.bigEndianBytes) + Array(low.bigEndianBytes)
    }

    public var description: String { lowerCaseHex(bytes) }

    @inlinable public static func < (a: SHA1Digest, b: SHA1Digest) -> Bool {
        (a.high, a.middle, a.low) < (b.high, b.middle, b.low)
    }
}

private extension FixedWidthInteger {
    var bigEndianBytes: [UInt8] { withUnsafeBytes(of: bigEndian) { Array($0) } }
}

private func lowerCaseHex(_ bytes: [UInt8]) -> String {
    let digits = Array("0123456789abcdef".utf8)
    return String(decoding: bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 15)]] }, as: UTF8.self)
}
