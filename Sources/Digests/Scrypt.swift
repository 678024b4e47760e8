import CLibCrypto
import Foundation

/// scrypt (RFC 7914) through the system's libcrypto (`EVP_PBE_scrypt`): the slow, memory-hard
/// hash the server keeps its users' passwords as. OpenSSL is maintained, audited and already
/// linked for SHA-1/SHA-256, so the server gains no new library for it.
public enum Scrypt {
    /// What a password hash is made with, stored beside it so a later change of the defaults
    /// still verifies the hashes made before.
    public struct Parameters: Sendable, Equatable, CustomStringConvertible {
        /// CPU/memory cost: a power of two (2^15 = 32768 takes 32 MiB and some 50-100 ms).
        public var n: UInt64
        /// Block size.
        public var r: UInt64
        /// Parallelism.
        public var p: UInt64

        public init(n: UInt64, r: UInt64, p: UInt64) {
            self.n = n
            self.r = r
            self.p = p
        }

        /// N = 2^15, r = 8, p = 1: the parameters RFC 7914 and OWASP give for interactive logins.
        public static let interactive = Parameters(n: 1 << 15, r: 8, p: 1)

        public var description: String { "N=\(n),r=\(r),p=\(p)" }

        /// What libcrypto needs for them (128·N·r bytes), with room to spare: its default cap
        /// (32 MiB) is exactly what N = 2^15, r = 8 needs and refuses it.
        var memoryLimit: UInt64 { 128 * n * r * (p + 1) + (1 << 20) }

        /// Parameters read back from a stored hash are checked before use: a corrupt or hostile
        /// row must not make the server allocate gigabytes.
        public var isReasonable: Bool {
            n >= 2 && n.nonzeroBitCount == 1 && n <= (1 << 20) && (1...32).contains(r) && (1...16).contains(p)
        }
    }

    public struct Failure: Error, CustomStringConvertible, Sendable {
        public var description: String
    }

    /// The key scrypt derives from `password` and `salt`.
    public static func derive(password: String, salt: [UInt8], parameters: Parameters, length: Int = 32) throws(Failure) -> [UInt8] {
        guard parameters.isReasonable else { throw Failure(description: "scrypt parameters \(parameters) are out of range") }
        var key = [UInt8](repeating: 0, count: length)
        let password = Array(password.utf8)
        let status = password.withUnsafeBufferPointer { passwordBytes in
            salt.withUnsafeBufferPointer { saltBytes in
                key.withUnsafeMutableBufferPointer { keyBytes in
                    passwordBytes.withMemoryRebound(to: CChar.self) { passwordChars in
                        EVP_PBE_scrypt(passwordChars.baseAddress, passwordChars.count, saltBytes.baseAddress, saltBytes.count,
                                       parameters.n, parameters.r, parameters.p, parameters.memoryLimit,
                                       keyBytes.baseAddress, keyBytes.count)
                    }
                }
            }
        }
        guard status == 1 else { throw Failure(description: "libcrypto's scrypt failed (parameters \(parameters))") }
        return key
    }

    /// `count` bytes from libcrypto's CSPRNG (a salt).
    public static func randomBytes(_ count: Int) throws(Failure) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: count)
        let status = bytes.withUnsafeMutableBufferPointer { RAND_bytes($0.baseAddress, Int32($0.count)) }
        guard status == 1 else { throw Failure(description: "libcrypto could not produce random bytes") }
        return bytes
    }

    /// Compares in time independent of where the bytes differ (`CRYPTO_memcmp`).
    public static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        guard !a.isEmpty else { return true }
        return a.withUnsafeBytes { x in b.withUnsafeBytes { y in CRYPTO_memcmp(x.baseAddress, y.baseAddress, x.count) == 0 } }
    }
}
