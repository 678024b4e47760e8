import Primitives

/// A transaction log file of a hive (`SYSTEM.LOG1`, `SYSTEM.LOG2`, or the single `SYSTEM.LOG`
/// of older Windows), as read from beside the hive.
public struct HiveLog: Sendable, Equatable {
    public var file: String
    public var bytes: [UInt8]

    public init(bytes: [UInt8], file: String) {
        self.file = file
        self.bytes = bytes
    }

    /// What Windows appends to a hive's name for its logs, in the order they are tried: .LOG1
    /// and .LOG2 (every Windows since Vista), .LOG (the one log of Windows XP and earlier; often
    /// an empty leftover beside the other two).
    public static let extensions = [".LOG1", ".LOG2", ".LOG"]
}

/// What replaying a hive's logs did, for the caller to report.
public struct LogReplay: Sendable, Equatable {
    public struct Applied: Sendable, Equatable {
        public var file: String
        /// New-format logs: the sequence numbers of the first and last entry applied. Old-format
        /// logs (one set of dirty pages): the log's own sequence number, twice.
        public var firstSequence: UInt32
        public var lastSequence: UInt32
        /// Log entries applied (1 for an old-format log) and the dirty pages they held.
        public var entries: Int
        public var pages: Int
        /// A log of Windows Vista to 8 (one set of 512-byte dirty pages, no entries).
        public var oldFormat = false
    }

    public var applied: [Applied]
    /// Where reading a log stopped before its end, at an entry torn by a crash (Windows stops
    /// there too): said so that a technician knows the newest changes were lost.
    public var stoppedEarly: [String]

    /// "SYSTEM.LOG1 (entries 2107-2110, 10 pages) and SYSTEM.LOG2 (entry 2111, 2 pages)".
    public var summary: String {
        let logs = applied.map { log in
            let pages = log.pages == 1 ? "1 page" : "\(log.pages) pages"
            if log.oldFormat { return "\(fileName(log.file)) (old format, \(pages))" }
            let entries = log.entries == 1 ? "entry \(log.firstSequence)" : "entries \(log.firstSequence)-\(log.lastSequence)"
            return "\(fileName(log.file)) (\(entries), \(pages))"
        }
        return logs.joined(separator: " and ") + stoppedEarly.map { "; " + $0 }.joined()
    }
}

/// The last component of a path or of a "device: path" name, for messages about the files
/// beside it.
func fileName(_ file: String) -> String {
    String(file.split(whereSeparator: { $0 == "/" || $0 == "\\" || $0 == " " }).last ?? Substring(file))
}

/// Replays transaction logs onto a hive's bytes, as Windows does when it loads a hive whose base
/// block says a write was not finished. From the "Windows registry file format specification"
/// (Maxim Suhanov, github.com/msuhanov/regf), sections "Format of transaction log files",
/// "Dirty state of a hive" and "Multiple transaction log files":
///
/// - New format (Windows 8.1 and later; file type 6): after a 512-byte copy of the base block,
///   "HvLE" log entries, each with a sequence number, the hive bins size at that moment, two
///   Marvin32 hashes and dirty pages (offset, size, bytes). Entries are applied in sequence order,
///   from the log whose entries are earliest, and only those not yet in the hive (sequence at or
///   after the hive's secondary sequence number; a log that starts before it is already in the
///   hive). A log continues the previous one only at the next sequence number. Recovery stops at
///   the first entry whose hashes, size or sequence number are wrong: what follows is torn.
///   When the hive's own base block is damaged only the log with the latest entries is used,
///   and the base block comes from it.
/// - Old format (Vista to Windows 8; file type 1, 2 on Windows 2000): the base block copy, a
///   "DIRT" bitmap of dirty 512-byte pages and those pages. One log is applied: the newest whose
///   last-written time is not older than the hive's (the first bin's time when the base block is
///   damaged).
///
/// The result is the hive as Windows would write it back: bins updated, the bins size of the
/// last entry, a base block from the log with both sequence numbers set to the last one applied
/// and a right checksum, so it reads as a clean hive.
enum LogReplayer {
    enum Outcome {
        case replayed(bytes: [UInt8], LogReplay)
        /// Nothing could be replayed: why, naming each log.
        case unusable(String)
    }

    static func replay(_ primary: [UInt8], file: String, logs: [HiveLog], baseBlockValid: Bool) -> Outcome {
        guard !logs.isEmpty else { return .unusable("no .LOG1 or .LOG2 was read with it") }
        var problems: [String] = []
        var opened: [LogFile] = []
        for log in logs {
            switch LogFile.open(log) {
            case let .success(file): opened.append(file)
            case let .failure(problem): problems.append("\(fileName(log.file)) \(problem.reason)")
            }
        }
        let newFormat = opened.filter { $0.format == .new }
        if !newFormat.isEmpty {
            switch replayNew(primary, newFormat, baseBlockValid: baseBlockValid) {
            case let .replayed(bytes, replay): return .replayed(bytes: bytes, replay)
            case let .unusable(problem): problems.append(problem)
            }
        }
        let oldFormat = opened.filter { $0.format == .old }
        if !oldFormat.isEmpty {
            switch replayOld(primary, oldFormat, baseBlockValid: baseBlockValid) {
            case let .replayed(bytes, replay): return .replayed(bytes: bytes, replay)
            case let .unusable(problem): problems.append(problem)
            }
        }
        return .unusable(problems.joined(separator: "; "))
    }

    // MARK: - The log files

    struct LogProblem: Error {
        var reason: String
    }

    struct LogFile {
        enum Format { case new, old }
        let log: HiveLog
        let format: Format
        /// The primary sequence number of the log's base block: its first entry's number.
        let sequence: UInt32
        var name: String { fileName(log.file) }
        var bytes: [UInt8] { log.bytes }

        /// A log whose base block copy is whole: signature, checksum, equal sequence numbers
        /// (unequal ones mean Windows was cut off while starting this log) and a log file type.
        static func open(_ log: HiveLog) -> Result<LogFile, LogProblem> {
            let bytes = log.bytes
            guard !bytes.isEmpty else { return .failure(LogProblem(reason: "is empty")) }
            guard bytes.count >= 512 else { return .failure(LogProblem(reason: "is \(bytes.count) bytes, too short for a transaction log")) }
            guard bytes[0..<4].elementsEqual("regf".utf8) else {
                return .failure(LogProblem(reason: "offset 0: no \"regf\" signature, not a transaction log"))
            }
            guard bytes.le32(508) == HiveFormat.checksum(bytes) else {
                return .failure(LogProblem(reason: "offset 508: the checksum of its base block copy is wrong (torn while being written)"))
            }
            guard bytes.le32(4) == bytes.le32(8) else {
                return .failure(LogProblem(reason: "offset 4: its sequence numbers differ (\(bytes.le32(4)) and \(bytes.le32(8))): torn while being written"))
            }
            let format: Format
            switch bytes.le32(28) {
            case 6: format = .new
            case 1, 2: format = .old
            case 0: return .failure(LogProblem(reason: "offset 28: is a hive, not a transaction log"))
            case let other: return .failure(LogProblem(reason: "offset 28: unknown file type \(other)"))
            }
            let binsSize = bytes.le32(40)
            guard binsSize > 0, binsSize % UInt32(HiveFormat.binAlignment) == 0 else {
                return .failure(LogProblem(reason: "offset 40: hive bins size \(binsSize) is not a multiple of 4096"))
            }
            return .success(LogFile(log: log, format: format, sequence: bytes.le32(4)))
        }
    }

    /// `a` is `b` or comes after it, counting sequence numbers round past 2^32 as Windows does.
    static func isAtOrAfter(_ a: UInt32, _ b: UInt32) -> Bool { Int32(bitPattern: a &- b) >= 0 }

    // MARK: - New format

    struct Entry {
        var sequence: UInt32
        var flags: UInt32
        var binsSize: Int
        /// Where each dirty page goes in the bins and where its bytes are in the log.
        var pages: [(target: Int, source: Range<Int>)]
    }

    /// The valid entries of a log from its first, consecutive in sequence; and, when reading
    /// stopped at a torn entry rather than at the end of the entries, where and why.
    static func entries(of log: LogFile) -> (entries: [Entry], torn: String?) {
        let bytes = log.bytes
        var entries: [Entry] = []
        var offset = 512
        var expected = log.sequence
        func torn(_ reason: String) -> (entries: [Entry], torn: String?) {
            (entries, "\(log.name) offset \(offset): \(reason)")
        }
        while offset + 40 <= bytes.count {
            // Zeros or an older entry's remains after the last entry: the normal end.
            guard bytes[offset..<offset + 4].elementsEqual("HvLE".utf8) else { break }
            let size = Int(bytes.le32(offset + 4))
            guard size >= 40, size % 512 == 0, offset + size <= bytes.count else {
                return torn("log entry size \(size) is not a whole number of sectors within the file")
            }
            guard bytes.le64(offset + 32) == Marvin32.hash(bytes[offset..<offset + 32]),
                  bytes.le64(offset + 24) == Marvin32.hash(bytes[offset + 40..<offset + size]) else {
                return torn("the log entry's hashes do not match its bytes (torn while being written)")
            }
            let sequence = bytes.le32(offset + 12)
            // An older entry left from before the log was last started over: the normal end.
            guard sequence == expected else { break }
            let binsSize = Int(bytes.le32(offset + 16))
            guard binsSize > 0, binsSize % HiveFormat.binAlignment == 0 else {
                return torn("hive bins size \(binsSize) is not a multiple of 4096")
            }
            let count = Int(bytes.le32(offset + 20))
            guard count <= (size - 40) / 8 else { return torn("\(count) dirty pages do not fit the \(size)-byte entry") }
            var pages: [(target: Int, source: Range<Int>)] = []
            var data = offset + 40 + count * 8
            for index in 0..<count {
                let target = Int(bytes.le32(offset + 40 + index * 8))
                let length = Int(bytes.le32(offset + 44 + index * 8))
                guard data + length <= offset + size else { return torn("dirty page \(index) runs past the entry") }
                guard target + length <= binsSize else {
                    return torn("dirty page \(index) (offset \(target), \(length) bytes) lies outside the \(binsSize)-byte hive bins")
                }
                pages.append((target, data..<data + length))
                data += length
            }
            entries.append(Entry(sequence: sequence, flags: bytes.le32(offset + 8), binsSize: binsSize, pages: pages))
            expected = sequence &+ 1
            offset += size
        }
        return (entries, nil)
    }

    static func replayNew(_ primary: [UInt8], _ logs: [LogFile], baseBlockValid: Bool) -> Outcome {
        // The log whose entries are earliest first (LOG1 and LOG2 take turns, so either may be).
        let ordered = logs.sorted { isAtOrAfter($1.sequence, $0.sequence) && $0.sequence != $1.sequence }
        var chosen: [(LogFile, [Entry])] = []
        var notes: [String] = []
        var torn: [String] = []
        if baseBlockValid {
            let secondary = primary.le32(8)
            var next: UInt32?
            for log in ordered {
                if let expected = next {
                    guard log.sequence == expected else { break }
                } else if !isAtOrAfter(log.sequence, secondary) {
                    notes.append("\(log.name) starts at entry \(log.sequence), already in the hive (at \(secondary))")
                    continue
                }
                let (entries, stop) = entries(of: log)
                if let stop { torn.append(stop) }
                guard let last = entries.last else {
                    notes.append("\(log.name) holds no valid log entry" + (stop.map { " (\($0))" } ?? ""))
                    if next == nil { continue } else { break }
                }
                // After a torn entry recovery goes on with the next log only if that log starts
                // right after the last entry applied (the loop's first check).
                chosen.append((log, entries))
                next = last.sequence &+ 1
            }
        } else if let latest = ordered.last {
            let (entries, stop) = entries(of: latest)
            if let stop { torn.append(stop) }
            if entries.isEmpty {
                notes.append("\(latest.name), the log with the latest entries, holds no valid log entry" + (stop.map { " (\($0))" } ?? ""))
            } else {
                chosen.append((latest, entries))
            }
        }
        guard let (lastLog, lastEntries) = chosen.last, let final = lastEntries.last else {
            return .unusable(notes.isEmpty ? "no log entry applies to it" : notes.joined(separator: "; "))
        }

        var bins = Array(primary[HiveFormat.baseBlockSize...])
        var applied: [LogReplay.Applied] = []
        for (log, entries) in chosen {
            var pageCount = 0
            for entry in entries {
                // The hive grows as the entry's bins size says; the new bins come in its pages.
                if bins.count < entry.binsSize { bins += [UInt8](repeating: 0, count: entry.binsSize - bins.count) }
                for page in entry.pages {
                    bins.replaceSubrange(page.target..<page.target + page.source.count, with: log.bytes[page.source])
                }
                pageCount += entry.pages.count
            }
            applied.append(LogReplay.Applied(file: log.log.file, firstSequence: entries[0].sequence,
                                             lastSequence: entries[entries.count - 1].sequence, entries: entries.count, pages: pageCount))
        }
        var block = baseBlock(primary, from: lastLog, sequence: final.sequence, binsSize: final.binsSize)
        // Only the KTM-locked bit of the base block's flags travels in log entries.
        block.put(block.le32(144) & ~1 | final.flags & 1, at: 144)
        block.put(HiveFormat.checksum(block), at: 508)
        return .replayed(bytes: block + bins, LogReplay(applied: applied, stoppedEarly: torn))
    }

    // MARK: - Old format

    static func replayOld(_ primary: [UInt8], _ logs: [LogFile], baseBlockValid: Bool) -> Outcome {
        // A log written before the hive's last write holds nothing the hive lacks.
        let written = baseBlockValid ? primary.le64(12) : primary.le64(HiveFormat.baseBlockSize + 20)
        var notes: [String] = []
        var best: (log: LogFile, pages: [(target: Int, source: Range<Int>)])?
        for log in logs {
            let time = log.bytes.le64(12)
            guard time >= written else {
                notes.append("\(log.name) was written before the hive's last write")
                continue
            }
            switch dirtyPages(of: log) {
            case let .failure(problem): notes.append("\(log.name) \(problem.reason)")
            case let .success(pages):
                // The newest applicable log; on a tie the first tried (.LOG1).
                if best == nil || time > (best?.log.bytes.le64(12) ?? 0) { best = (log, pages) }
            }
        }
        guard let (log, pages) = best else { return .unusable(notes.joined(separator: "; ")) }
        let binsSize = Int(log.bytes.le32(40))
        var bins = Array(primary[HiveFormat.baseBlockSize...])
        if bins.count < binsSize { bins += [UInt8](repeating: 0, count: binsSize - bins.count) }
        for page in pages {
            bins.replaceSubrange(page.target..<page.target + page.source.count, with: log.bytes[page.source])
        }
        var block = baseBlock(primary, from: log, sequence: log.sequence, binsSize: binsSize)
        block.put(HiveFormat.checksum(block), at: 508)
        let applied = LogReplay.Applied(file: log.log.file, firstSequence: log.sequence, lastSequence: log.sequence,
                                        entries: 1, pages: pages.count, oldFormat: true)
        return .replayed(bytes: block + bins, LogReplay(applied: [applied], stoppedEarly: []))
    }

    /// The dirty 512-byte pages an old-format log holds: the "DIRT" bitmap after the base block
    /// copy has one bit per page of the bins (the first byte's lowest bit for the first page),
    /// and the pages follow the bitmap from the next sector on, one per set bit.
    static func dirtyPages(of log: LogFile) -> Result<[(target: Int, source: Range<Int>)], LogProblem> {
        let bytes = log.bytes
        let binsSize = Int(bytes.le32(40))
        let bitmapSize = binsSize / 512 / 8
        guard bytes.count >= 516 + bitmapSize, bytes[512..<516].elementsEqual("DIRT".utf8) else {
            return .failure(LogProblem(reason: "offset 512: no \"DIRT\" dirty-page bitmap"))
        }
        var source = HiveFormat.align(516 + bitmapSize, 512)
        var pages: [(target: Int, source: Range<Int>)] = []
        for index in 0..<bitmapSize * 8 where bytes[516 + index / 8] & (1 << (index % 8)) != 0 {
            guard source + 512 <= bytes.count else {
                return .failure(LogProblem(reason: "ends at offset \(bytes.count), before all of its dirty pages"))
            }
            pages.append((index * 512, source..<source + 512))
            source += 512
        }
        guard !pages.isEmpty else { return .failure(LogProblem(reason: "marks no page dirty")) }
        return .success(pages)
    }

    /// The recovered hive's base block: the log's copy of the base block Windows had in memory
    /// (root cell, version, times, flags), over the rest of the hive's own 4 KiB, made a primary
    /// file again with both sequence numbers at the last one applied: clean.
    static func baseBlock(_ primary: [UInt8], from log: LogFile, sequence: UInt32, binsSize: Int) -> [UInt8] {
        var block = Array(primary[0..<HiveFormat.baseBlockSize])
        block.replaceSubrange(0..<512, with: log.bytes[0..<512])
        block.put(sequence, at: 4)
        block.put(sequence, at: 8)
        block.put(UInt32(0), at: 28)
        block.put(UInt32(binsSize), at: 40)
        return block
    }
}
