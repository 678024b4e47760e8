import DiskModel
import Foundation
import Primitives

/// When a step runs: comparisons of variables and facts, combined with all/any/not.
public indirect enum Condition: Sendable, Equatable {
    public enum Comparison: String, Sendable, CaseIterable {
        case equals, notEquals
        /// Glob (`Latitude*`), case-insensitive as the facts Windows and firmware report.
        case matches
        /// An extended regular expression.
        case regex
        case greaterThan, lessThan, atLeast, atMost

        /// The operators a `{"fact": ...}` condition writes, as people write them.
        public static let symbols: [String: Comparison] = [
            "==": .equals, "!=": .notEquals, ">": .greaterThan, "<": .lessThan, ">=": .atLeast, "<=": .atMost,
        ]

        public var isNumeric: Bool { [.greaterThan, .lessThan, .atLeast, .atMost].contains(self) }
    }

    case all([Condition])
    case any([Condition])
    case not(Condition)
    case compare(Comparison, String, String)
    /// The variable is set and not empty.
    case defined(String)
    /// A fact (`windows.build`) against a value: `{"fact": "windows.build", ">=": 19045}`.
    /// Holds only when the fact is known: with no Windows found, no comparison holds.
    case fact(String, Comparison, String)

    /// Evaluates with `${...}` already resolvable through `lookup`; returns the result and a
    /// sentence saying why, for the plan and the skip event.
    public func evaluate(_ substitute: (String) -> String) -> (Bool, String) {
        switch self {
        case let .all(conditions):
            for condition in conditions {
                let (ok, why) = condition.evaluate(substitute)
                if !ok { return (false, why) }
            }
            return (true, "all conditions hold")
        case let .any(conditions):
            var reasons: [String] = []
            for condition in conditions {
                let (ok, why) = condition.evaluate(substitute)
                if ok { return (true, why) }
                reasons.append(why)
            }
            return (false, "none holds: " + reasons.joined(separator: "; "))
        case let .not(condition):
            let (ok, why) = condition.evaluate(substitute)
            return (!ok, "not (\(why))")
        case let .defined(name):
            let value = substitute("${\(name)}")
            let ok = !value.isEmpty && value != "${\(name)}"
            return (ok, ok ? "\(name) is set" : "\(name) is not set")
        case let .compare(comparison, left, right):
            let a = substitute(left), b = substitute(right)
            guard let ok = Self.compare(comparison, a, b) else {
                return (false, "\"\(a)\" \(comparison.rawValue) \"\(b)\": not numbers")
            }
            return (ok, "\"\(a)\" \(ok ? "" : "does not ")\(comparison.rawValue.lowercased()) \"\(b)\"".replacingOccurrences(of: "does not equals", with: "does not equal"))
        case let .fact(name, comparison, expected):
            let variable = FactNames.variable(forFact: name) ?? name
            let value = substitute("${\(variable)}")
            guard !value.isEmpty, value != "${\(variable)}" else {
                return (false, "\(name) is not known" + (name.hasPrefix("windows.") ? " (findWindows has not run, found no Windows, or could not read this value)" : ""))
            }
            let wanted = substitute(expected)
            guard let ok = Self.compare(comparison, value, wanted) else {
                return (false, "\(name) is \"\(value)\", not a number to compare with \(wanted)")
            }
            let phrase: [Comparison: String] = [.equals: "equal to", .notEquals: "different from", .matches: "matching",
                                                .regex: "matching", .greaterThan: "greater than", .lessThan: "less than",
                                                .atLeast: "at least", .atMost: "at most"]
            return (ok, "\(name) is \(value), \(ok ? "" : "not ")\(phrase[comparison] ?? comparison.rawValue) \(wanted)")
        }
    }

    /// One comparison of two resolved values; nil when a numeric one is given something that
    /// is not a number.
    static func compare(_ comparison: Comparison, _ a: String, _ b: String) -> Bool? {
        switch comparison {
        case .equals: return a.caseInsensitiveCompare(b) == .orderedSame
        case .notEquals: return a.caseInsensitiveCompare(b) != .orderedSame
        case .matches: return Glob(b, .caseInsensitive).matches(a)
        case .regex:
            return (try? NSRegularExpression(pattern: b)).map {
                $0.firstMatch(in: a, range: NSRange(a.startIndex..., in: a)) != nil
            } ?? false
        case .greaterThan, .lessThan, .atLeast, .atMost:
            guard let x = number(a), let y = number(b) else { return nil }
            switch comparison {
            case .greaterThan: return x > y
            case .lessThan: return x < y
            case .atLeast: return x >= y
            default: return x <= y
            }
        }
    }

    /// Numbers, or sizes such as `8GiB` (as bytes).
    static func number(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let value = Double(trimmed) { return value }
        return ByteSize.parse(trimmed).map(Double.init)
    }
}
