import Foundation

/// Decodes the JSON files technicians write (selection rules, layouts) so that every mistake
/// is reported with the file and the JSON path of the value at fault: `$.partitions[2].size`.
public enum JSONInput {
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, file: String) throws(DiskError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DiskError {
            throw error
        } catch {
            let problem = JSONProblem(error)
            throw DiskError.invalidJSON(file: file, jsonPath: problem.jsonPath, reason: problem.reason)
        }
    }

    public static func load<T: Decodable>(_ type: T.Type, path: String) throws(DiskError) -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DiskError.io(path: path, operation: "read", errno: errno == 0 ? ENOENT : errno)
        }
        return try decode(type, from: data, file: path)
    }

    /// A value-level error raised by our own `init(from:)`, carrying the decoder's path.
    public static func invalid(_ decoder: any Decoder, _ reason: String) -> DecodingError {
        .dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: reason))
    }
}

/// A JSON decoder's complaint as a person reads it: where (the path to the value at fault) and
/// why. The one mapping for the files technicians write, task sequences and the server's bodies.
public struct JSONProblem: Error, Sendable, Equatable {
    public enum Step: Sendable, Equatable {
        case key(String)
        case index(Int)
    }

    /// From the root to the value at fault; empty when the document itself is at fault.
    public var location: [Step]
    public var reason: String

    public init(location: [Step], reason: String) {
        self.location = location
        self.reason = reason
    }

    public init(codingPath: [any CodingKey], reason: String) {
        self.init(location: codingPath.map { $0.intValue.map(Step.index) ?? .key($0.stringValue) }, reason: reason)
    }

    public init(_ error: any Error) {
        guard let error = error as? DecodingError else {
            self.init(location: [], reason: "\(error)")
            return
        }
        switch error {
        case let .dataCorrupted(context):
            // Foundation's own message for broken syntax names the line and column.
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            let syntax = context.codingPath.isEmpty && context.debugDescription.contains("JSON")
            self.init(codingPath: context.codingPath,
                      reason: syntax ? "not valid JSON" + (underlying.map { ": \($0)" } ?? "") : context.debugDescription)
        case let .keyNotFound(key, context):
            self.init(codingPath: context.codingPath + [key], reason: "missing (required)")
        case let .typeMismatch(type, context):
            self.init(codingPath: context.codingPath, reason: "expected \(Self.typeName(type))")
        case let .valueNotFound(type, context):
            self.init(codingPath: context.codingPath, reason: "expected \(Self.typeName(type)), found null")
        @unknown default:
            self.init(location: [], reason: "\(error)")
        }
    }

    /// `$.partitions[2].size`, as the files' error messages name a value.
    public var jsonPath: String { "$" + path(keyPrefix: ".") }

    /// `events[3].kind`, as an API error's `field` names it; nil for the whole body.
    public var fieldPath: String? {
        guard case let .key(first)? = location.first else { return location.isEmpty ? nil : path(keyPrefix: ".") }
        return first + path(keyPrefix: ".", from: 1)
    }

    private func path(keyPrefix: String, from start: Int = 0) -> String {
        location.dropFirst(start).map { step -> String in
            switch step {
            case let .key(name): return keyPrefix + name
            case let .index(index): return "[\(index)]"
            }
        }.joined()
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: return "a string"
        case is Bool.Type: return "true or false"
        case is Int.Type, is UInt64.Type, is Double.Type: return "a number"
        case is [Any].Type: return "an array"
        default:
            let name = String(describing: type)
            if name.hasPrefix("Array") { return "an array" }
            if name.hasPrefix("Dictionary") { return "an object" }
            return "a value of type \(name)"
        }
    }
}

/// Rejects keys a type does not know, so a typo (`"sise"`) is an error and not silently ignored.
public struct UnknownKeyCheck {
    private struct AnyKey: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init?(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public static func check(_ decoder: any Decoder, allowed: Set<String>) throws {
        let container = try decoder.container(keyedBy: AnyKey.self)
        for key in container.allKeys where !allowed.contains(key.stringValue) {
            throw DecodingError.dataCorrupted(.init(
                codingPath: decoder.codingPath + [key],
                debugDescription: "unknown key \"\(key.stringValue)\" (known: \(allowed.sorted().joined(separator: ", ")))"))
        }
    }
}
