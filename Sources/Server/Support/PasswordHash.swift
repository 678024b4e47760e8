import Digests
import Foundation

/// Users' passwords as the database keeps them: `scrypt$N=32768,r=8,p=1$<salt>$<key>` (salt and
/// key in base64). scrypt from libcrypto (`Scrypt`): slow and memory-hard, so a stolen table
/// costs an attacker 32 MiB and tens of milliseconds per guess; a random salt per user, so no
/// guess serves two users; the parameters stored with each hash, so raising them later still
/// verifies the old ones.
enum PasswordHash {
    static let scheme = "scrypt"
    static let saltBytes = 16
    static let keyBytes = 32

    /// What a new password must be: long enough to resist guessing through the throttled
    /// login, short enough that hashing it costs nothing unusual.
    static func check(_ password: String, field: String = "password") throws(APIError) {
        guard password.count >= 8 else {
            throw APIError(.unprocessableContent, "a password has at least 8 characters", field: field)
        }
        guard password.utf8.count <= 1024 else {
            throw APIError(.unprocessableContent, "a password has at most 1024 bytes", field: field)
        }
    }

    /// A new hash of `password` with a fresh salt. On a thread of its own: scrypt holds a CPU
    /// for tens of milliseconds, which the server's request threads must not wait on.
    static func make(_ password: String, parameters: Scrypt.Parameters = .interactive) async throws -> String {
        try await offload {
            let salt = try Scrypt.randomBytes(saltBytes)
            let key = try Scrypt.derive(password: password, salt: salt, parameters: parameters, length: keyBytes)
            return "\(scheme)$\(parameters)$\(Data(salt).base64EncodedString())$\(Data(key).base64EncodedString())"
        }
    }

    /// Whether `password` is the one `stored` was made from, compared in constant time. A
    /// stored value that is not a hash of ours verifies nothing.
    static func verify(_ password: String, against stored: String) async -> Bool {
        guard let parsed = parse(stored) else { return false }
        let derived = try? await offload {
            try Scrypt.derive(password: password, salt: parsed.salt, parameters: parsed.parameters, length: parsed.key.count)
        }
        guard let derived else { return false }
        return Scrypt.constantTimeEqual(derived, parsed.key)
    }

    /// The parts of a stored hash; nil when it is not one (or its parameters are out of range).
    static func parse(_ stored: String) -> (parameters: Scrypt.Parameters, salt: [UInt8], key: [UInt8])? {
        let parts = stored.split(separator: "$", omittingEmptySubsequences: false)
        guard parts.count == 4, parts[0] == scheme,
              let salt = Data(base64Encoded: String(parts[2])), let key = Data(base64Encoded: String(parts[3])),
              salt.count >= 8, (16...64).contains(key.count) else { return nil }
        var values: [String: UInt64] = [:]
        for item in parts[1].split(separator: ",") {
            let pair = item.split(separator: "=", maxSplits: 1)
            guard pair.count == 2, let value = UInt64(pair[1]) else { return nil }
            values[String(pair[0])] = value
        }
        guard let n = values["N"], let r = values["r"], let p = values["p"] else { return nil }
        let parameters = Scrypt.Parameters(n: n, r: r, p: p)
        guard parameters.isReasonable else { return nil }
        return (parameters, Array(salt), Array(key))
    }

    private static func offload<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global(qos: .userInitiated).async { continuation.resume(with: Result { try work() }) }
        }
    }
}
