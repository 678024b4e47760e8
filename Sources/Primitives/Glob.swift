/// Whether a comparison treats `A` and `a` as the same letter. Every caller states it: Windows
/// names, MACs, models, the server's rules and conditions ignore case, as Windows and the people
/// typing them do; Linux device names and a disk rule's serial are compared as written.
public enum CaseRule: Sendable, Hashable {
    case caseSensitive
    case caseInsensitive
}

/// A shell pattern, as fnmatch(3) without flags reads it: `*` any run of characters (`/`
/// included), `?` one character, `[abc]`, `[a-z]`, `[!a]` or `[^a]` one character of (or not
/// of) a set, everything else literal. Unlike fnmatch, a backslash is literal too, because Windows
/// paths are full of them (write `[*]` for a literal star), and there are no `[:alpha:]` classes.
/// A `[` with no closing `]` is literal.
public struct Glob: Sendable, Hashable {
    public let pattern: String
    public let caseRule: CaseRule
    private let tokens: [Token]

    public init(_ pattern: String, _ caseRule: CaseRule) {
        self.pattern = pattern
        self.caseRule = caseRule
        tokens = Self.compile(Array(caseRule == .caseInsensitive ? pattern.lowercased() : pattern))
    }

    public func matches(_ text: String) -> Bool {
        let text = Array(caseRule == .caseInsensitive ? text.lowercased() : text)
        // One backtrack point, the last `*`: when a later token fails, that star takes one more
        // character and the rest is tried again. Every other token takes exactly one character, so
        // this finds a match whenever one exists, in at most pattern × text steps and no recursion.
        var token = 0, index = 0
        var lastStar: (token: Int, index: Int)?
        while index < text.count {
            if token < tokens.count, tokens[token] == .anyRun {
                lastStar = (token, index)
                token += 1
            } else if token < tokens.count, tokens[token].matches(text[index]) {
                token += 1
                index += 1
            } else if let star = lastStar {
                lastStar = (star.token, star.index + 1)
                token = star.token + 1
                index = star.index + 1
            } else {
                return false
            }
        }
        return tokens[token...].allSatisfy { $0 == .anyRun }
    }

    private enum Token: Sendable, Hashable {
        case literal(Character)
        case anyCharacter
        case anyRun
        case set([ClosedRange<Character>], negated: Bool)

        func matches(_ character: Character) -> Bool {
            switch self {
            case let .literal(wanted): return character == wanted
            case .anyCharacter: return true
            case .anyRun: return false
            case let .set(ranges, negated): return ranges.contains { $0.contains(character) } != negated
            }
        }
    }

    private static func compile(_ pattern: [Character]) -> [Token] {
        var tokens: [Token] = []
        var index = 0
        while index < pattern.count {
            let token: Token
            switch pattern[index] {
            case "*": token = .anyRun
            case "?": token = .anyCharacter
            case "[":
                if let (set, end) = bracket(pattern, from: index) {
                    tokens.append(set)
                    index = end
                    continue
                }
                token = .literal("[")
            case let character: token = .literal(character)
            }
            // Runs of stars are one star: fewer backtrack points, the same language.
            if token != .anyRun || tokens.last != .anyRun { tokens.append(token) }
            index += 1
        }
        return tokens
    }

    /// The set opened by the `[` at `start` and the index just past its `]`, or nil when it
    /// is never closed. A `]` right after `[`, `[!` or `[^` is a member, as is a `-` that
    /// cannot be a range (first or last). A reversed range such as `z-a` holds nothing.
    private static func bracket(_ pattern: [Character], from start: Int) -> (Token, Int)? {
        var index = start + 1
        let negated = index < pattern.count && (pattern[index] == "!" || pattern[index] == "^")
        if negated { index += 1 }
        var ranges: [ClosedRange<Character>] = []
        var first = true
        while index < pattern.count {
            let lower = pattern[index]
            if lower == "]" && !first { return (.set(ranges, negated: negated), index + 1) }
            first = false
            var upper = lower
            if index + 2 < pattern.count, pattern[index + 1] == "-", pattern[index + 2] != "]" {
                upper = pattern[index + 2]
                index += 2
            }
            if lower <= upper { ranges.append(lower...upper) }
            index += 1
        }
        return nil
    }
}
