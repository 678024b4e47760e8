import Foundation

/// Which variables are secret by their name alone, when nobody listed them in `secrets`.
///
/// Long, unambiguous words count anywhere in the name, so run-together names in any case are
/// caught (`adminpassword`, `DOMAINJOINSECRET`, `AdminPwd`): password, passwd, pwd, passphrase,
/// secret, token, credential. Short words count only as a whole word of the name (camelCase,
/// `_` or digits separate words), because as bare substrings they are everywhere in ordinary
/// names: `key` (not `KeyboardLocale`, `Monkey`), `pass` (not `Bypass`, `Compass`,
/// `Passthrough`), `pin` (not `Mapping`, `Spinner`), `pw`, `psk`.
///
/// `ProductKey` is secret on purpose: a Windows product key is a licence that is worth money
/// and is not to be shown in logs (it always was hidden). A name that only looks secret
/// (`KeyIndex`) costs a `********` in a log line; a secret that looks ordinary costs the secret,
/// so such a variable belongs in the sequence's `secrets` list.
public enum SecretNames {
    static let anywhere = ["password", "passwd", "pwd", "passphrase", "secret", "token", "credential"]
    static let wholeWords: Set<String> = ["key", "keys", "pass", "pin", "pins", "pw", "psk"]

    public static func looksSecret(_ name: String) -> Bool {
        let lower = name.lowercased()
        if anywhere.contains(where: { lower.contains($0) }) { return true }
        return words(of: name).contains { wholeWords.contains($0) }
    }

    /// `DomainJoinPIN2` → domain, join, pin, 2; `SSHKey` → ssh, key; `admin_pass` → admin, pass.
    static func words(of name: String) -> [String] {
        var words: [String] = []
        var current = ""
        let characters = Array(name)
        func close() {
            if !current.isEmpty { words.append(current.lowercased()) }
            current = ""
        }
        for (index, character) in characters.enumerated() {
            guard character.isLetter || character.isNumber else {
                close()
                continue
            }
            if let previous = current.last {
                let next = index + 1 < characters.count ? characters[index + 1] : nil
                let startsWord = (previous.isLowercase && character.isUppercase)
                    // The last capital of an acronym starts the next word: `PINCode` → PIN, Code.
                    || (previous.isUppercase && character.isUppercase && next?.isLowercase == true)
                    || (previous.isNumber != character.isNumber)
                if startsWord { close() }
            }
            current.append(character)
        }
        close()
        return words
    }
}

/// Replaces every secret value in text bound for a log line, an event, or a stored event,
/// whatever its length: the agent applies it to what it logs and sends, the server to what it
/// stores and shows. One implementation for both, so they never disagree about what is hidden.
public struct SecretRedactor: Sendable, Equatable {
    public static let mask = "********"

    /// The byte strings to hide, longest first: a secret containing another shorter one is
    /// hidden whole, not as a mask with the longer one's remains around it.
    private let needles: [[UInt8]]

    /// `values`: the secrets themselves. Each is hidden as it is and also as XML and JSON
    /// escape it (it reaches logs inside unattend.xml and inside JSON text). Empty ones hide nothing.
    public init(values: some Sequence<String>) {
        var forms: Set<String> = []
        for value in values where !value.isEmpty {
            forms.insert(value)
            forms.insert(XMLText.escape(value))
            let json = Self.jsonEscaped(value)
            forms.insert(json)
            // JSON writers differ on `/`: escaped or not.
            forms.insert(json.replacingOccurrences(of: "\\/", with: "/"))
        }
        needles = forms.map { Array($0.utf8) }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.lexicographicallyPrecedes($1) }
    }

    public static let none = SecretRedactor(values: [])

    public var isEmpty: Bool { needles.isEmpty }

    /// One pass over the text's UTF-8: at each position the longest secret that starts there is
    /// masked and skipped, so a mask is never searched again (a secret `*` does not eat masks).
    /// Matching whole UTF-8 sequences keeps the result valid text.
    public func redact(_ text: String) -> String {
        guard !needles.isEmpty, !text.isEmpty else { return text }
        let bytes = Array(text.utf8)
        let firstBytes = Set(needles.compactMap(\.first))
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count)
        var index = 0
        var changed = false
        outer: while index < bytes.count {
            if firstBytes.contains(bytes[index]) {
                for needle in needles where needle.count <= bytes.count - index {
                    if bytes[index..<(index + needle.count)].elementsEqual(needle) {
                        result += Self.mask.utf8
                        index += needle.count
                        changed = true
                        continue outer
                    }
                }
            }
            result.append(bytes[index])
            index += 1
        }
        return changed ? String(decoding: result, as: UTF8.self) : text
    }

    /// The event with every text an agent writes into it redacted (its message, and its name:
    /// a step's name may be built from variables).
    public func redact(_ event: Event) -> Event {
        guard !needles.isEmpty else { return event }
        var event = event
        event.message = event.message.map(redact)
        event.name = event.name.map(redact)
        return event
    }

    /// The value as it appears between the quotes of a JSON string.
    static func jsonEscaped(_ value: String) -> String {
        guard let data = try? JSONEncoder().encode(value) else { return value }
        let quoted = String(decoding: data, as: UTF8.self)
        return String(quoted.dropFirst().dropLast())
    }
}
