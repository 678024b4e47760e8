import CLibCrypto

/// SHA-256 through libcrypto (CPU SHA extensions): every download and image is checked against
/// the digest its sequence or index promises, as the bytes pass.
public final class SHA256Hasher {
    private let context: OpaquePointer?

    public init() {
        context = EVP_MD_CTX_new()
        reset()
    }

    deinit { EVP_MD_CTX_free(context) }

    public func reset() { EVP_DigestInit_ex(context, EVP_sha256(), nil) }

    public func update(_ data: UnsafeRawBufferPointer) {
        guard !data.isEmpty else { return }
        EVP_DigestUpdate(context, data.baseAddress, data.count)
    }

    public func update(_ bytes: some ContiguousBytes) { bytes.withUnsafeBytes { update($0) } }

    /// Lower-case hex, as `sha256sum` prints it.
    public func finish() -> String {
        var digest = [UInt8](repeating: 0, count: 32)
        var length: UInt32 = 0
        _ = digest.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        reset()
        return digest.map { String(format: "%02x", $0) }.joined()
    }

    public static func hex(of bytes: some ContiguousBytes) -> String {
        let hasher = SHA256Hasher()
        hasher.update(bytes)
        return hasher.finish()
    }
}

import Foundation
