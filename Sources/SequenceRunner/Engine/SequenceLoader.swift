import Digests
import Failures
import Foundation
import SequenceModel
import Transport

/// Reads a sequence from a file or an http(s) URL and checks it.
public enum SequenceLoader {
    public struct Invalid: Error, CustomStringConvertible {
        public var origin: String
        public var issues: [SequenceIssue]
        public var description: String {
            "\(origin): the sequence has \(issues.filter { $0.severity == .error }.count) error(s):\n"
                + issues.map { "  " + $0.description }.joined(separator: "\n")
        }
    }

    public static func data(_ location: String, client: HTTPClient) throws -> Data {
        if location.hasPrefix("http://") || location.hasPrefix("https://") { return try client.fetch(location, limit: 4 << 20) }
        guard let data = FileManager.default.contents(atPath: location) else {
            throw StepFailure("\(location): cannot read the sequence file", kind: .badInput)
        }
        return data
    }

    /// The sequence and its warnings; throws `Invalid` listing every error.
    public static func load(_ location: String, client: HTTPClient) throws -> (TaskSequence, [SequenceIssue]) {
        let bytes = try data(location, client: client)
        let (parsed, issues) = SequenceParser.parse(bytes, origin: location)
        guard var sequence = parsed else { throw Invalid(origin: location, issues: issues) }
        sequence.digest = SHA256Hasher.hex(of: bytes)
        return (sequence, issues)
    }
}
