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
    }

    case all([Condition])
    case any([Condition])
    case not(Condition)
    case compare(Comparison, String, String)
    /// The variable is set and not empty.
    case defined(String)

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
            let ok: Bool
            switch comparison {
            case .equals: ok = a.caseInsensitiveCompare(b) == .orderedSame
            case .notEquals: ok = a.caseInsensitiveCompare(b) != .orderedSame
            case .matches: ok = Glob(b, .caseInsensitive).matches(a)
            case .regex:
                ok = (try? NSRegularExpression(pattern: b)).map {
                    $0.firstMatch(in: a, range: NSRange(a.startIndex..., in: a)) != nil
                } ?? false
            case .greaterThan, .lessThan, .atLeast, .atMost:
                guard let x = Self.number(a), let y = Self.number(b) else {
                    return (false, "\"\(a)\" \(comparison.rawValue) \"\(b)\": not numbers")
                }
                switch comparison {
                case .greaterThan: ok = x > y
                case .lessThan: ok = x < y
                case .atLeast: ok = x >= y
                default: ok = x <= y
                }
            }
            return (ok, "\"\(a)\" \(ok ? "" : "does not ")\(comparison.rawValue.lowercased()) \"\(b)\"".replacingOccurrences(of: "does not equals", with: "does not equal"))
        }
    }

    /// Numbers, or sizes such as `8GiB` (as bytes).
    static func number(_ text: String) -> Double? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if let value = Double(trimmed) { return value }
        return ByteSize.parse(trimmed).map(Double.init)
    }
}
