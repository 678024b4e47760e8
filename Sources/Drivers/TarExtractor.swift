import Foundation

/// Unpacks ustar, pax and GNU tar as bytes arrive, so a bundle is never held whole in memory.
/// Only regular files and folders are accepted: a driver bundle has no reason to carry links or
/// device nodes, and each of those is a way out of the scratch folder.
struct TarExtractor {
    let destination: String
    let bundle: String

    private enum Kind { case file, skip, paxLocal, longName }
    private enum State { case header, data(remaining: UInt64, kind: Kind), padding(Int), end }

    private var state = State.header
    private var block: [UInt8] = []
    private var metadata: [UInt8] = []
    private var output: FileHandle?
    private var member = ""
    private var offset: UInt64 = 0
    private var headerOffset: UInt64 = 0
    private var pendingPath: String?
    private var pendingSize: UInt64?
    /// pax and GNU long names are small; anything larger is a hostile or broken bundle.
    private let metadataLimit: UInt64 = 1 << 20

    init(destination: String, bundle: String) {
        self.destination = destination
        self.bundle = bundle
    }

    mutating func feed(_ input: UnsafeRawBufferPointer) throws {
        var i = 0
        while i < input.count {
            switch state {
            case .end:
                return
            case .header:
                let n = min(512 - block.count, input.count - i)
                block.append(contentsOf: input[i..<(i + n)])
                i += n
                offset += UInt64(n)
                if block.count == 512 {
                    headerOffset = offset - 512
                    let header = block
                    block.removeAll(keepingCapacity: true)
                    try processHeader(header)
                }
            case let .data(remaining, kind):
                let n = Int(min(remaining, UInt64(input.count - i)))
                let piece = UnsafeRawBufferPointer(rebasing: input[i..<(i + n)])
                switch kind {
                case .file: try write(piece)
                case .paxLocal, .longName: metadata.append(contentsOf: piece)
                case .skip: break
                }
                i += n
                offset += UInt64(n)
                let left = remaining - UInt64(n)
                if left == 0 { try endData(kind) } else { state = .data(remaining: left, kind: kind) }
            case let .padding(count):
                let n = min(count, input.count - i)
                i += n
                offset += UInt64(n)
                state = count - n == 0 ? .header : .padding(count - n)
            }
        }
    }

    mutating func finish() throws {
        switch state {
        case .end: return
        case .header where block.isEmpty: return
        default: throw failure("the archive ends in the middle of member '\(member)'")
        }
    }

    mutating func closeCurrent() {
        try? output?.close()
        output = nil
    }

    private func failure(_ message: String) -> DriverSourceError {
        DriverSourceError("\(bundle): \(message)")
    }

    private mutating func write(_ piece: UnsafeRawBufferPointer) throws {
        do {
            try output?.write(contentsOf: Data(piece))
        } catch {
            throw failure("cannot write member '\(member)': \(error)")
        }
    }

    private mutating func endData(_ kind: Kind) throws {
        switch kind {
        case .file: closeCurrent()
        case .paxLocal: try parsePax(metadata)
        case .longName:
            pendingPath = String(decoding: metadata.prefix { $0 != 0 }, as: UTF8.self)
        case .skip: break
        }
        metadata.removeAll()
        let consumed = (offset - headerOffset - 512) % 512
        state = consumed == 0 ? .header : .padding(Int(512 - consumed))
    }

    private mutating func processHeader(_ header: [UInt8]) throws {
        if header.allSatisfy({ $0 == 0 }) {
            // The end-of-archive marker; anything after it is not part of the archive.
            state = .end
            return
        }
        let stored = Self.number(header[148..<156])
        let sum = header.enumerated().reduce(UInt64(0)) { $0 + UInt64((148..<156).contains($1.offset) ? 0x20 : $1.element) }
        guard stored == sum else { throw failure("corrupt tar header at byte \(headerOffset) (checksum mismatch)") }

        var name = Self.string(header[0..<100])
        let isUstar = header[257..<262].elementsEqual("ustar".utf8)
        if isUstar {
            let prefix = Self.string(header[345..<500])
            if !prefix.isEmpty { name = prefix + "/" + name }
        }
        if let pendingPath { name = pendingPath }
        var size = Self.number(header[124..<136])
        if let pendingSize { size = pendingSize }
        let type = header[156]
        member = name

        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "L"):
            guard size <= metadataLimit else { throw failure("member '\(name)' has an oversized extended header") }
            try startData(size: size, kind: type == UInt8(ascii: "x") ? .paxLocal : .longName, keepPending: true)
            return
        case UInt8(ascii: "g"), UInt8(ascii: "K"), UInt8(ascii: "V"):
            // Global pax defaults, GNU long link names and volume labels have no file to make.
            try startData(size: type == UInt8(ascii: "V") ? 0 : size, kind: .skip, keepPending: true)
            return
        default: break
        }
        pendingPath = nil
        pendingSize = nil

        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"):
            let target = try safePath(name)
            guard let target else { throw failure("member '\(name)' has an empty name") }
            try makeParent(of: target, member: name)
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory), isDirectory.boolValue {
                throw failure("member '\(name)' is a file where the archive already made a folder")
            }
            guard FileManager.default.createFile(atPath: target, contents: nil), let handle = FileHandle(forWritingAtPath: target) else {
                throw failure("cannot create member '\(name)' at \(target)")
            }
            output = handle
            try startData(size: size, kind: .file, keepPending: false)
        case UInt8(ascii: "5"):
            if let target = try safePath(name) {
                do {
                    try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
                } catch {
                    throw failure("cannot create folder for member '\(name)': \(error)")
                }
            }
            try startData(size: 0, kind: .skip, keepPending: false)
        case UInt8(ascii: "2"):
            throw failure("member '\(name)' is a symbolic link (to '\(Self.string(header[157..<257]))'); driver bundles may hold only files and folders")
        case UInt8(ascii: "1"):
            throw failure("member '\(name)' is a hard link; driver bundles may hold only files and folders")
        case UInt8(ascii: "3"), UInt8(ascii: "4"), UInt8(ascii: "6"):
            throw failure("member '\(name)' is a device or FIFO; driver bundles may hold only files and folders")
        default:
            throw failure("member '\(name)' has unsupported tar type '\(Character(Unicode.Scalar(type)))'")
        }
    }

    private mutating func startData(size: UInt64, kind: Kind, keepPending: Bool) throws {
        if size == 0 {
            if kind == .file { closeCurrent() }
            if kind == .paxLocal || kind == .longName { try endData(kind) } else { state = .header }
            return
        }
        state = .data(remaining: size, kind: kind)
    }

    /// Where a member goes under `destination`, or nil for the archive's own root (`./`).
    private func safePath(_ name: String) throws -> String? {
        if name.hasPrefix("/") { throw failure("member '\(name)' has an absolute path") }
        var components: [Substring] = []
        for component in name.split(separator: "/") where component != "." {
            if component == ".." { throw failure("member '\(name)' has a '..' component") }
            components.append(component)
        }
        if components.isEmpty { return nil }
        return destination + "/" + components.joined(separator: "/")
    }

    private func makeParent(of target: String, member name: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
        } catch {
            throw failure("cannot create folder for member '\(name)': \(error)")
        }
    }

    /// pax records: `<length> <key>=<value>\n`; only `path` and `size` change what we extract.
    private mutating func parsePax(_ data: [UInt8]) throws {
        var index = 0
        while index < data.count {
            guard let space = data[index...].firstIndex(of: UInt8(ascii: " ")),
                  let length = Int(String(decoding: data[index..<space], as: UTF8.self)), length > 0,
                  index + length <= data.count else {
                throw failure("corrupt pax header before member at byte \(headerOffset)")
            }
            let record = data[(space + 1)..<(index + length)].dropLast(while: { $0 == UInt8(ascii: "\n") })
            if let equals = record.firstIndex(of: UInt8(ascii: "=")) {
                let key = String(decoding: record[record.startIndex..<equals], as: UTF8.self)
                let value = String(decoding: record[(equals + 1)...], as: UTF8.self)
                if key == "path" { pendingPath = value }
                if key == "size", let size = UInt64(value) { pendingSize = size }
            }
            index += length
        }
    }

    private static func string(_ field: ArraySlice<UInt8>) -> String {
        String(decoding: field.prefix { $0 != 0 }, as: UTF8.self)
    }

    /// Octal, or GNU base-256 (high bit set) for values that do not fit.
    private static func number(_ field: ArraySlice<UInt8>) -> UInt64 {
        if let first = field.first, first & 0x80 != 0 {
            return field.dropFirst().reduce(UInt64(first & 0x7F)) { $0 << 8 | UInt64($1) }
        }
        var value: UInt64 = 0
        for byte in field {
            if byte == 0 || byte == 0x20 { if value > 0 { break } else { continue } }
            guard (UInt8(ascii: "0")...UInt8(ascii: "7")).contains(byte) else { break }
            value = value << 3 | UInt64(byte - UInt8(ascii: "0"))
        }
        return value
    }
}

private extension ArraySlice where Element == UInt8 {
    func dropLast(while predicate: (UInt8) -> Bool) -> ArraySlice<UInt8> {
        var result = self
        while let last = result.last, predicate(last) { result = result.dropLast() }
        return result
    }
}
