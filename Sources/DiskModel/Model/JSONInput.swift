import Foundation

/// Decodes the JSON files technicians write (selection rules, layouts) so that every mistake
/// is reported with the file and the JSON path of the value at fault: `$.partitions[2].size`.
public enum JSONInput {
    public static func decode<T: Decodable>(_ type: T.Type, from data: Data, file: String) throws(DiskError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: data)
        } catch let error as DiskError {
            throw error
        } catch let error as DecodingError {
            throw describe(error, file: file)
        } catch {
            throw DiskError.invalidJSON(file: file, jsonPath: "$", reason: "\(error)")
        }
    }

    public static func load<T: Decodable>(_ type: T.Type, path: String) throws(DiskError) -> T {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw DiskError.io(path: path, operation: "read", errno: errno == 0 ? ENOENT : errno)
        }
        return try decode(type, from: data, file: path)
    }

    /// `$.partitions[2].size` from a decoder's coding path.
    public static func path(_ codingPath: [any CodingKey]) -> String {
        var text = "$"
        for key in codingPath {
            if let index = key.intValue { text += "[\(index)]" } else { text += "." + key.stringValue }
        }
        return text
    }

    /// A value-level error raised by our own `init(from:)`, carrying the decoder's path.
    public static func invalid(_ decoder: any Decoder, _ reason: String) -> DecodingError {
        .dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: reason))
    }

    private static func describe(_ error: DecodingError, file: String) -> DiskError {
        switch error {
        case let .dataCorrupted(context):
            let underlying = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
            let reason = context.codingPath.isEmpty && context.debugDescription.contains("JSON")
                ? "not valid JSON" + (underlying.map { ": \($0)" } ?? "")
                : context.debugDescription
            return .invalidJSON(file: file, jsonPath: path(context.codingPath), reason: reason)
        case let .keyNotFound(key, context):
            return .invalidJSON(file: file, jsonPath: path(context.codingPath + [key]), reason: "missing (required)")
        case let .typeMismatch(type, context):
            return .invalidJSON(file: file, jsonPath: path(context.codingPath), reason: "expected \(typeName(type))")
        case let .valueNotFound(type, context):
            return .invalidJSON(file: file, jsonPath: path(context.codingPath), reason: "expected \(typeName(type)), found null")
        @unknown default:
            return .invalidJSON(file: file, jsonPath: "$", reason: "\(error)")
        }
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
