import Foundation
import SequenceModel
import Synchronization

/// Secret values as the server keeps them: sealed with the secrets key on their way into the
/// database, shown to administrators as a placeholder, opened only when the agent is served
/// its deployment (and to redact the events it sends).
///
/// A variable is secret when the sequence lists it in `secrets` or its name looks secret
/// (`SecretNames`); a sealed value stays sealed whatever its name. In a sequence only the
/// values of its `variables` change: the rest of the administrator's text (formatting, key
/// order, numbers) is kept byte for byte, so what the agent gets is what was uploaded.
struct SecretSealing: Sendable {
    let box: SecretBox

    /// What the admin API shows for a secret that has a value; sent back unchanged in a PUT,
    /// it keeps the stored value.
    static let placeholder = "(secret, set)"

    // MARK: - Which variables are secret

    /// A sequence's secret variables: its `secrets` list, the names that look secret, and any
    /// whose value is sealed.
    static func secretNames(ofSequence body: String) -> Set<String> {
        var names: Set<String> = []
        if let sequence = SequenceParser.parse(Data(body.utf8), origin: "sequence").0 {
            names = sequence.secrets
        }
        for member in SequenceVariablesText(body)?.members ?? [] {
            if SecretNames.looksSecret(member.name) || member.value.stringValue.map(SecretBox.isSealed) == true {
                names.insert(member.name)
            }
        }
        return names
    }

    /// A deployment's secret variables: the sequence's and the server's (rule) variables alike.
    static func secretNames(sequenceBody: String, variables: [String: String]) -> Set<String> {
        secretNames(ofSequence: sequenceBody).union(variables.filter { SecretNames.looksSecret($0.key) || SecretBox.isSealed($0.value) }.keys)
    }

    // MARK: - Sequences

    /// The body with every secret variable's value sealed; values sealed already are checked
    /// to open with this key and kept.
    func sealSequence(_ body: String, what: String) throws -> String {
        guard let text = SequenceVariablesText(body) else { return body }
        let names = Self.secretNames(ofSequence: body)
        return try text.replacing { member in
            if let value = member.value.stringValue, SecretBox.isSealed(value) {
                _ = try box.open(value, what: "\(member.name) in \(what)")
                return nil
            }
            guard names.contains(member.name), let plain = member.value.scalarText, !plain.isEmpty else { return nil }
            return try box.seal(plain)
        }
    }

    /// What an administrator sees: each secret that has a value as the placeholder.
    static func maskSequence(_ body: String) -> String {
        guard let text = SequenceVariablesText(body) else { return body }
        let names = secretNames(ofSequence: body)
        return text.replacing { member in
            let sealed = member.value.stringValue.map(SecretBox.isSealed) == true
            guard sealed || (names.contains(member.name) && member.value.scalarText?.isEmpty == false) else { return nil }
            return placeholder
        }
    }

    /// What the agent runs: every sealed value opened.
    func openSequence(_ body: String, what: String) throws -> String {
        guard let text = SequenceVariablesText(body) else { return body }
        return try text.replacing { member in
            guard let value = member.value.stringValue, SecretBox.isSealed(value) else { return nil }
            return try box.open(value, what: "\(member.name) in \(what)")
        }
    }

    /// A PUT of `body` in which secrets the administrator did not change are the placeholder:
    /// each takes the value `stored` holds for that variable (still sealed). A placeholder with
    /// nothing stored behind it is refused, naming the variable: the placeholder is not a value.
    static func keepingStoredSecrets(_ body: String, stored: String?) throws(PlaceholderWithoutValue) -> String {
        guard let text = SequenceVariablesText(body) else { return body }
        let kept = stored.flatMap(SequenceVariablesText.init)?.members ?? []
        var missing: String?
        let result = text.replacing { member in
            guard member.value.stringValue == placeholder else { return nil }
            guard let value = kept.last(where: { $0.name == member.name })?.value.stringValue, SecretBox.isSealed(value) else {
                missing = missing ?? member.name
                return nil
            }
            return value
        }
        if let missing { throw PlaceholderWithoutValue(variable: missing, field: "$.variables.\(missing)") }
        return result
    }

    /// The first variable sent in with a value that looks sealed but does not open with this
    /// server's key (copied from another server's database): stored, it could never be opened.
    func unopenableSealedValue(inSequence body: String) -> String? {
        SequenceVariablesText(body)?.members.first { member in
            guard let value = member.value.stringValue, SecretBox.isSealed(value) else { return false }
            return (try? box.open(value, what: member.name)) == nil
        }?.name
    }

    func unopenableSealedValue(in variables: [String: String]) -> String? {
        variables.sorted { $0.key < $1.key }.first { SecretBox.isSealed($0.value) && (try? box.open($0.value, what: $0.key)) == nil }?.key
    }

    // MARK: - Variables of rules and deployments

    /// The variables with each secret one's value sealed (values sealed already are kept).
    func seal(_ variables: [String: String], secretNames: Set<String>, what: String) throws -> [String: String] {
        var result = variables
        for (name, value) in variables {
            if SecretBox.isSealed(value) {
                _ = try box.open(value, what: "\(name) of \(what)")
            } else if !value.isEmpty && (secretNames.contains(name) || SecretNames.looksSecret(name)) {
                result[name] = try box.seal(value)
            }
        }
        return result
    }

    /// What an administrator sees of them.
    static func mask(_ variables: [String: String]) -> [String: String] {
        var masked = variables
        for (name, value) in variables where SecretBox.isSealed(value) || (SecretNames.looksSecret(name) && !value.isEmpty) {
            masked[name] = placeholder
        }
        return masked
    }

    /// What the agent gets.
    func open(_ variables: [String: String], what: String) throws -> [String: String] {
        var result = variables
        for (name, value) in variables where SecretBox.isSealed(value) {
            result[name] = try box.open(value, what: "\(name) of \(what)")
        }
        return result
    }

    /// Hides every secret value of the deployment, whatever its length: what the server applies
    /// to the events an agent sends before storing them.
    func redactor(for deployment: Deployment) throws -> SecretRedactor {
        let what = "deployment \(deployment.id)"
        let names = Self.secretNames(sequenceBody: deployment.sequenceBody, variables: deployment.variables)
        var values: [String] = []
        for member in SequenceVariablesText(deployment.sequenceBody)?.members ?? [] where names.contains(member.name) {
            guard let value = member.value.scalarText else { continue }
            values.append(SecretBox.isSealed(value) ? try box.open(value, what: "\(member.name) in \(what)") : value)
        }
        for (name, value) in try open(deployment.variables, what: what) where names.contains(name) {
            values.append(value)
        }
        return SecretRedactor(values: values)
    }
}

/// A rule or sequence that sends the placeholder for a secret nothing is stored for.
struct PlaceholderWithoutValue: Error {
    var variable: String
    var field: String
    var message: String {
        "\(variable) is \"\(SecretSealing.placeholder)\", the placeholder the admin API shows for a stored secret, but no value is "
            + "stored for it: send its value"
    }
}

/// The `variables` members of a sequence's JSON text, each with where its value is, so their
/// values can be replaced without touching anything else. Every top-level `variables` object
/// counts (a duplicate key is sealed too, whichever one a reader would take).
struct SequenceVariablesText {
    struct Member {
        var name: String
        var value: JSONValue
        /// The value's JSON text in the body's UTF-8.
        var range: Range<Int>
    }

    let bytes: [UInt8]
    let members: [Member]

    /// Nil when the text is not a JSON object (then it holds no variables to seal).
    init?(_ text: String) {
        let bytes = Array(text.utf8)
        self.bytes = bytes
        var scanner = JSONTextScanner(bytes: bytes)
        var found: [Member] = []
        var topLevel: [(name: Range<Int>, value: Range<Int>)] = []
        guard scanner.object({ topLevel.append(($0, $1)) }) else { return nil }
        for entry in topLevel where Self.decode(String.self, bytes[entry.name]) == "variables" {
            var inner = JSONTextScanner(bytes: bytes, index: entry.value.lowerBound)
            var entries: [(Range<Int>, Range<Int>)] = []
            guard inner.object({ entries.append(($0, $1)) }) else { continue }
            for (name, value) in entries {
                guard let name = Self.decode(String.self, bytes[name]), let decoded = Self.decode(JSONValue.self, bytes[value]) else { continue }
                found.append(Member(name: name, value: decoded, range: value))
            }
        }
        members = found
    }

    /// The text with the values `replacement` gives (as strings) in place; nil keeps a value.
    func replacing(_ replacement: (Member) throws -> String?) rethrows -> String {
        var result = bytes
        var changed = false
        // From the end, so each range still points at its value.
        for member in members.sorted(by: { $0.range.lowerBound > $1.range.lowerBound }) {
            guard let text = try replacement(member) else { continue }
            result.replaceSubrange(member.range, with: Self.jsonString(text).utf8)
            changed = true
        }
        return changed ? String(decoding: result, as: UTF8.self) : String(decoding: bytes, as: UTF8.self)
    }

    /// One JSON value on its own, through an array so any decoder takes it.
    static func decode<T: Decodable>(_ type: T.Type, _ json: ArraySlice<UInt8>) -> T? {
        (try? JSONDecoder().decode([T].self, from: Data([UInt8]("[".utf8) + json + [UInt8]("]".utf8))))?.first
    }

    static func jsonString(_ text: String) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .withoutEscapingSlashes
        return (try? encoder.encode([text])).map { String(String(decoding: $0, as: UTF8.self).dropFirst().dropLast()) } ?? "\"\""
    }
}

/// Just enough of a JSON reader to find where an object's members and their values are.
/// Values are skipped, not checked: the text was checked when it was stored, and decoding each
/// member on its own catches anything this lets through.
struct JSONTextScanner {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8], index: Int = 0) {
        self.bytes = bytes
        self.index = index
    }

    private static let quote = UInt8(ascii: "\""), backslash = UInt8(ascii: "\\")

    private mutating func skipWhitespace() {
        while index < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[index]) { index += 1 }
    }

    private mutating func take(_ character: Unicode.Scalar) -> Bool {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == UInt8(ascii: character) else { return false }
        index += 1
        return true
    }

    private mutating func string() -> Range<Int>? {
        skipWhitespace()
        guard index < bytes.count, bytes[index] == Self.quote else { return nil }
        let start = index
        index += 1
        while index < bytes.count {
            let byte = bytes[index]
            index += byte == Self.backslash ? 2 : 1
            if byte == Self.quote { return start..<index }
        }
        return nil
    }

    private mutating func value() -> Range<Int>? {
        skipWhitespace()
        guard index < bytes.count else { return nil }
        let start = index
        switch bytes[index] {
        case Self.quote:
            return string()
        case UInt8(ascii: "{"):
            return object { _, _ in } ? start..<index : nil
        case UInt8(ascii: "["):
            index += 1
            if take("]") { return start..<index }
            while true {
                guard value() != nil else { return nil }
                if take(",") { continue }
                return take("]") ? start..<index : nil
            }
        default:
            // A number, true, false or null: up to what ends a value.
            while index < bytes.count, !",}] \t\r\n".utf8.contains(bytes[index]) { index += 1 }
            return index > start ? start..<index : nil
        }
    }

    /// The object starting here, calling `member` with each member's name and value ranges.
    mutating func object(_ member: (Range<Int>, Range<Int>) -> Void) -> Bool {
        guard take("{") else { return false }
        if take("}") { return true }
        while true {
            guard let name = string(), take(":"), let value = value() else { return false }
            member(name, value)
            if take(",") { continue }
            return take("}")
        }
    }
}

/// Redactors of recent deployments by id. A deployment's secrets never change, and making its
/// redactor parses its sequence and opens its sealed values: too much for every event batch.
final class DeploymentRedactors: Sendable {
    private let cache = Mutex<[String: SecretRedactor]>([:])
    /// Far more than the deployments running at once; past it the cache starts again.
    static let capacity = 4096

    func redactor(for deployment: Deployment, sealing: SecretSealing) throws -> SecretRedactor {
        if let known = cache.withLock({ $0[deployment.id] }) { return known }
        let made = try sealing.redactor(for: deployment)
        cache.withLock { cache in
            if cache.count >= Self.capacity { cache.removeAll() }
            cache[deployment.id] = made
        }
        return made
    }
}
