import Foundation
import SequenceModel
import Synchronization

/// The local record of every event, one JSON object per line, fsynced as written, so nothing
/// is lost when the agent, the machine or the server goes away: the reporter sends from here
/// and remembers (in `acknowledged`) how far the server has confirmed.
public final class EventSpool: Sendable {
    public let directory: String
    public var eventsPath: String { directory + "/events.jsonl" }
    private var acknowledgedPath: String { directory + "/acknowledged" }
    private let descriptor: Int32
    /// The last sequence number given; holding it also keeps appends whole and in order.
    private let last: Mutex<Int>
    public var lastSequence: Int { last.withLock { $0 } }

    /// `numberingAfter`: the server already holds events up to this number for the deployment
    /// (another agent's, before this one took it over), so this spool's first event comes after it.
    public init(directory: String, numberingAfter: Int = 0) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        descriptor = open(directory + "/events.jsonl", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: directory + "/events.jsonl"])
        }
        // A spool reused after a restart continues its numbering: the server already has 1...n.
        last = Mutex(max(Self.read(directory + "/events.jsonl").last?.sequence ?? 0, numberingAfter))
    }

    deinit { close(descriptor) }

    /// Numbers the event, appends it and syncs it to disk; returns it numbered.
    @discardableResult
    public func append(_ event: Event, sync: Bool = true) -> Event {
        last.withLock { lastSequence in
            var numbered = event
            lastSequence += 1
            numbered.sequence = lastSequence
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            if var line = try? encoder.encode(numbered) {
                line.append(UInt8(ascii: "\n"))
                _ = line.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
                if sync { fsync(descriptor) }
            }
            return numbered
        }
    }

    public func events(after sequence: Int, limit: Int = 500) -> [Event] {
        Array(Self.read(eventsPath).filter { $0.sequence > sequence }.prefix(limit))
    }

    public var acknowledged: Int {
        get {
            (FileManager.default.contents(atPath: acknowledgedPath).flatMap {
                Int(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            }) ?? 0
        }
        set {
            let temporary = acknowledgedPath + ".new"
            FileManager.default.createFile(atPath: temporary, contents: Data("\(newValue)\n".utf8))
            rename(temporary, acknowledgedPath)
        }
    }

    static func read(_ path: String) -> [Event] {
        guard let data = FileManager.default.contents(atPath: path) else { return [] }
        let decoder = JSONDecoder()
        // A line cut short by a crash is skipped, not fatal.
        return data.split(separator: UInt8(ascii: "\n")).compactMap { try? decoder.decode(Event.self, from: Data($0)) }
    }
}
