import Crypto
import Failures
import Foundation
import Logging

/// The key that seals secret values in the database (AES-256-GCM), kept outside it: whoever
/// copies the database (a backup, a dump, a stolen disk of the database server) gets only
/// ciphertext. It comes from `--secrets-key-file`, from `IMPRINT_SECRETS_KEY`, or from the key
/// file the server generates in its data folder on first start.
public struct SecretBox: Sendable {
    /// The key's bytes (swift-crypto's `SymmetricKey` is not `Sendable`; one is made per use).
    private let keyData: Data
    private var key: SymmetricKey { SymmetricKey(data: keyData) }
    /// Where the key came from, as the administrator would name it ("the key file /var/...").
    public let source: String
    /// A fingerprint that tells keys apart without revealing them: what the database records
    /// and what an error names, so the right file can be found among backups.
    public let keyID: String

    /// Every sealed value starts so; `v1` is AES-256-GCM, a 12-byte nonce, ciphertext and tag,
    /// base64. A later format gets `v2` and old values still open.
    static let prefix = "imprint-secret:"
    static let version1 = "imprint-secret:v1:"

    public init(keyData: Data, source: String) throws(SecretsKeyError) {
        guard keyData.count == 32 else {
            throw SecretsKeyError(.badInput, "\(source) holds \(keyData.count) bytes; a secrets key is 32 bytes (256 bits) in base64: "
                                  + "make one with `head -c 32 /dev/urandom | base64`")
        }
        self.keyData = keyData
        self.source = source
        let fingerprint = HMAC<SHA256>.authenticationCode(for: Data("imprint secrets key id".utf8), using: SymmetricKey(data: keyData))
        keyID = fingerprint.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// A key written as base64 (the key file's content, or the environment variable's).
    public init(base64 text: String, source: String) throws(SecretsKeyError) {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw SecretsKeyError(.badInput, "\(source) is not base64; a secrets key is 32 random bytes in base64: "
                                  + "make one with `head -c 32 /dev/urandom | base64`")
        }
        try self.init(keyData: data, source: source)
    }

    /// A new random key, for tests and for the generated key file.
    static func randomKeyData() -> Data { SymmetricKey(size: .bits256).withUnsafeBytes { Data($0) } }

    static func isSealed(_ text: String) -> Bool { text.hasPrefix(prefix) }

    func seal(_ plaintext: String) throws -> String {
        let box = try AES.GCM.seal(Data(plaintext.utf8), using: key)
        guard let combined = box.combined else { throw SecretsKeyError(.internal, "AES-GCM gave no combined box for a 12-byte nonce") }
        return Self.version1 + combined.base64EncodedString()
    }

    /// The plaintext of a sealed value; `what` names it in the error ("DomainJoinPassword of deployment X").
    func open(_ sealed: String, what: String) throws(SecretsKeyError) -> String {
        guard sealed.hasPrefix(Self.version1) else {
            throw SecretsKeyError(.badInput, "\(what) is sealed in a format this server does not know "
                                  + "(\(sealed.prefix(20))...): it was written by a newer imprint-server")
        }
        guard let data = Data(base64Encoded: String(sealed.dropFirst(Self.version1.count))),
              let box = try? AES.GCM.SealedBox(combined: data) else {
            throw SecretsKeyError(.badInput, "\(what) is damaged in the database (not a sealed value): set it again")
        }
        guard let plaintext = try? AES.GCM.open(box, using: key), let text = String(data: plaintext, encoding: .utf8) else {
            throw SecretsKeyError.wrongKey(what: what, source: source, storedKeyID: nil, keyID: keyID)
        }
        return text
    }

    /// What the database keeps to tell whether a key is the one its secrets were sealed with.
    static let checkText = "imprint secrets key check"

    // MARK: - Where the key comes from

    /// `--secrets-key-file`, else `IMPRINT_SECRETS_KEY` (base64), else `secrets.key` in the data
    /// folder, generated when missing. A generated key is written before anything is sealed
    /// with it (a key lost after sealing loses the secrets); `generated` says it was.
    public static func load(file: String?, base64: String?, dataDirectory: String, logger: Logger) throws(SecretsKeyError)
        -> (box: SecretBox, generatedFile: String?) {
        if file != nil && base64 != nil {
            throw SecretsKeyError(.badInput, "give the secrets key once: --secrets-key-file or IMPRINT_SECRETS_KEY, not both")
        }
        if let base64 {
            return (try SecretBox(base64: base64, source: "IMPRINT_SECRETS_KEY"), nil)
        }
        let path = file ?? dataDirectory + "/secrets.key"
        if FileManager.default.fileExists(atPath: path) {
            let box = try read(path)
            if let mode = (try? FileManager.default.attributesOfItem(atPath: path))?[.posixPermissions] as? Int, mode & 0o077 != 0 {
                logger.warning("secrets: \(path) may be read by other users (mode \(String(mode, radix: 8))): chmod 600 \(path)")
            }
            return (box, nil)
        }
        guard file == nil else {
            throw SecretsKeyError(.badInput, "--secrets-key-file \(path): no such file (the key sealing the database's secrets; "
                                  + "leave the option out to have a new one generated in the data folder)")
        }
        try write(randomKeyData(), to: path)
        let box = try read(path)
        logger.notice("""
            secrets: generated a new secrets key in \(path) (mode 0600). Back it up apart from the database: without it the \
            secrets stored in the database cannot be read, and a copy of the database without it reveals none
            """)
        return (box, path)
    }

    static func read(_ path: String) throws(SecretsKeyError) -> SecretBox {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SecretsKeyError(.disk, "cannot read the secrets key file \(path) (permissions?)")
        }
        return try SecretBox(base64: String(decoding: data, as: UTF8.self), source: "the key file \(path)")
    }

    /// Written beside the final name with mode 0600 from creation, flushed, then renamed over
    /// it: the key file is complete or absent, never half written, and never readable by others.
    static func write(_ key: Data, to path: String) throws(SecretsKeyError) {
        let temporary = path + ".new-\(UUID().uuidString.prefix(8))"
        let text = Data((key.base64EncodedString() + "\n").utf8)
        let descriptor = Foundation.open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw SecretsKeyError(.disk, "cannot create \(temporary) for the secrets key: \(String(cString: strerror(errno)))")
        }
        let written = text.withUnsafeBytes { Foundation.write(descriptor, $0.baseAddress, $0.count) }
        let synced = fsync(descriptor) == 0
        close(descriptor)
        guard written == text.count, synced, rename(temporary, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(temporary)
            throw SecretsKeyError(.disk, "cannot write the secrets key to \(path): \(reason)")
        }
        // The rename itself on disk: a crash right after start must not lose the key file.
        let directory = Foundation.open((path as NSString).deletingLastPathComponent, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if directory >= 0 {
            fsync(directory)
            close(directory)
        }
    }
}

/// A secrets key that is missing, malformed, or not the one the database's secrets were sealed with.
public struct SecretsKeyError: Error, ClassifiedError, CustomStringConvertible {
    public var failureKind: FailureKind
    public var message: String
    public var description: String { message }

    init(_ kind: FailureKind, _ message: String) {
        failureKind = kind
        self.message = message
    }

    static func wrongKey(what: String, source: String, storedKeyID: String?, keyID: String) -> SecretsKeyError {
        SecretsKeyError(.badInput, "the secrets in the database were encrypted with another key"
                        + (storedKeyID.map { " (key id \($0))" } ?? "") + " than \(source) (key id \(keyID)), so \(what) cannot be read: "
                        + "give the key file used before (--secrets-key-file PATH, or its content in IMPRINT_SECRETS_KEY); "
                        + "the key file generated on first start is secrets.key in the data folder")
    }
}
