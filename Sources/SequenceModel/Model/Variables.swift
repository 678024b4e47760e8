import Foundation

/// The variables a running sequence sees, in MDT's order of precedence: the machine's facts
/// (read-only), then the sequence's defaults, the server's per-machine values, and what
/// `setVariable` steps set. `${Name}` is replaced; `$$` is a literal `$`.
public struct Variables: Sendable {
    public private(set) var facts: [String: String]
    public private(set) var values: [String: String]
    /// Names whose values are replaced by `********` in anything logged or reported.
    public private(set) var secretNames: Set<String>

    public init(facts: [String: String], sequence: [String: String], server: [String: String], secrets: Set<String>) {
        self.facts = facts
        // The installed Windows' facts are absent until findWindows reads them: a value of the
        // server's (or a restored one) under their names must not pass for one.
        values = sequence.merging(server) { _, new in new }.filter { !WindowsFacts.variableNames.contains($0.key) }
        secretNames = secrets.union(values.keys.filter(SecretNames.looksSecret))
    }

    public subscript(name: String) -> String? { facts[name] ?? values[name] }

    public mutating func set(_ name: String, _ value: String) {
        values[name] = value
        if SecretNames.looksSecret(name) { secretNames.insert(name) }
    }

    /// The facts of the installed Windows `findWindows` chose (`WindowsFacts.variables`),
    /// replacing those of any earlier one: none are left when it found nothing readable.
    public mutating func setWindowsFacts(_ windows: [String: String]) {
        for name in WindowsFacts.variableNames { facts[name] = nil }
        facts.merge(windows.filter { WindowsFacts.variableNames.contains($0.key) }) { _, new in new }
    }

    public var all: [String: String] { values.merging(facts) { _, fact in fact } }

    /// Replaces every `${Name}`; an unknown name becomes empty (as MDT does) and is reported.
    /// A variable's own value may name others (`"ImageURL": "${ServerURL}/images/x.wim"`): it
    /// is expanded in turn, as MDT does, up to a depth that stops loops (`A` → `B` → `A`).
    /// Facts are the machine's data, never templates, and are taken as they are.
    public func substitute(_ text: String, escape: (String) -> String = { $0 }, unknown: ((String) -> Void)? = nil) -> String {
        substitute(text, escape: escape, unknown: unknown, expanding: [])
    }

    private func substitute(_ text: String, escape: (String) -> String, unknown: ((String) -> Void)?, expanding: Set<String>) -> String {
        guard text.contains("$") else { return text }
        var result = ""
        var index = text.startIndex
        while index < text.endIndex {
            let character = text[index]
            let next = text.index(after: index)
            if character == "$", next < text.endIndex, text[next] == "$" {
                result.append("$")
                index = text.index(after: next)
            } else if character == "$", next < text.endIndex, text[next] == "{",
                      let close = text[next...].firstIndex(of: "}") {
                let name = String(text[text.index(after: next)..<close])
                if let value = self[name] {
                    var expanded = value
                    if facts[name] == nil, value.contains("$"), !expanding.contains(name), expanding.count < 16 {
                        expanded = substitute(value, escape: { $0 }, unknown: unknown, expanding: expanding.union([name]))
                    }
                    result += escape(expanded)
                } else {
                    unknown?(name)
                }
                index = text.index(after: close)
            } else {
                result.append(character)
                index = next
            }
        }
        return result
    }

    /// What hides the secret variables' values, as they are now.
    public var redactor: SecretRedactor { SecretRedactor(values: secretNames.compactMap { self[$0] }) }

    /// Hides secret values in text bound for a log or an event.
    public func redact(_ text: String) -> String { redactor.redact(text) }

    /// The names `${...}` in a text refers to.
    static func references(in text: String) -> [String] {
        var names: [String] = []
        var rest = Substring(text)
        while let start = rest.range(of: "${") {
            if start.lowerBound > rest.startIndex, rest[rest.index(before: start.lowerBound)] == "$" {
                rest = rest[start.upperBound...]
                continue
            }
            guard let close = rest[start.upperBound...].firstIndex(of: "}") else { break }
            names.append(String(rest[start.upperBound..<close]))
            rest = rest[rest.index(after: close)...]
        }
        return names
    }

    static func syntaxProblems(in text: String) -> [String] {
        var problems: [String] = []
        for name in references(in: text) where !Checker.isVariableName(name) {
            problems.append("\"${\(name)}\" is not a variable reference")
        }
        if let open = text.range(of: "${"), text[open.upperBound...].firstIndex(of: "}") == nil {
            problems.append("\"${\" without a closing \"}\"")
        }
        return problems
    }
}

/// XML escaping for values substituted into unattend.xml, and HTML escaping for the dashboard:
/// the apostrophe as a character reference, which both read (HTML4 has no `&apos;`).
public enum XMLText {
    public static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }
}
