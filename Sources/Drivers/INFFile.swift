import Failures
import Foundation

/// A problem in an INF file, always naming the file and (when known) the line, so whoever
/// maintains the driver share can fix the package without guessing.
public struct INFError: Error, CustomStringConvertible, Equatable, Sendable {
    public var path: String
    public var line: Int?
    public var message: String

    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }

    public var description: String {
        if let line { return "\(path):\(line): \(message)" }
        return "\(path): \(message)"
    }
}

/// Processor architectures as INF decorations spell them (`NTamd64`, `SourceDisksFiles.amd64`).
public enum Architecture: String, Sendable, CaseIterable, Equatable, Hashable {
    case amd64, x86, arm64
}

/// The Windows the drivers are for; INF TargetOS decorations are evaluated against it.
public struct TargetOS: Sendable, Equatable {
    public var architecture: Architecture
    public var majorVersion: Int
    public var minorVersion: Int
    public var build: Int
    /// 1 = workstation, 3 = server (VER_NT_* values as the ProductType field uses them).
    public var productType: Int

    public init(architecture: Architecture, majorVersion: Int = 10, minorVersion: Int = 0, build: Int = 22631, productType: Int = 1) {
        self.architecture = architecture
        self.majorVersion = majorVersion
        self.minorVersion = minorVersion
        self.build = build
        self.productType = productType
    }
}

public enum INFEncoding: String, Sendable, Equatable {
    case utf16LE, utf16LENoBOM, utf16BE, utf8BOM, utf8, windows1252
}

/// One logical line: `key = v1, v2` or a bare `v1, v2`, with strings already substituted.
public struct INFLine: Sendable, Equatable {
    public var key: String?
    public var values: [String]
    public var lineNumber: Int
}

public struct INFSection: Sendable, Equatable {
    public var name: String
    public var lineNumber: Int
    public var lines: [INFLine]

    /// The first value of the first line with this key; INF keys are case-insensitive and
    /// Windows keeps the first of duplicates.
    public func value(_ key: String) -> String? { line(key)?.values.first }

    public func line(_ key: String) -> INFLine? {
        lines.first { $0.key?.caseInsensitiveCompare(key) == .orderedSame }
    }
}

public struct DriverDate: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var year: Int, month: Int, day: Int
    public static func < (a: DriverDate, b: DriverDate) -> Bool {
        (a.year, a.month, a.day) < (b.year, b.month, b.day)
    }
    public var description: String { String(format: "%02d/%02d/%04d", month, day, year) }
}

public struct DriverVersion: Sendable, Equatable, Comparable, CustomStringConvertible {
    public var parts: [Int]
    public static func < (a: DriverVersion, b: DriverVersion) -> Bool {
        a.parts.lexicographicallyPrecedes(b.parts)
    }
    public var description: String { parts.map(String.init).joined(separator: ".") }
}

public struct INFVersion: Sendable, Equatable {
    public var signature: String?
    public var deviceClass: String?
    public var classGUID: String?
    public var provider: String?
    public var driverDate: DriverDate?
    public var driverVersion: DriverVersion?
    public var catalogFile: String?
}

/// A `[Manufacturer]` entry: the models section's base name and its TargetOS decorations.
public struct INFManufacturer: Sendable, Equatable {
    public var name: String
    public var modelsSection: String
    public var decorations: [String]
    public var lineNumber: Int
}

public struct INFModel: Sendable, Equatable {
    public var description: String
    public var installSection: String
    /// The models section the line was read from (after decoration selection).
    public var modelsSection: String
    public var hardwareID: String?
    public var compatibleIDs: [String]
    public var lineNumber: Int
}

/// A file the INF copies, with its place relative to the INF's folder (forward slashes).
public struct INFSourceFile: Sendable, Equatable, Hashable {
    public var name: String
    public var relativePath: String
}

public struct INFFile: Sendable {
    public let path: String
    public let encoding: INFEncoding
    public private(set) var sections: [INFSection] = []
    private var sectionIndex: [String: Int] = [:]
    public private(set) var version = INFVersion()

    public init(path: String, locale: String = "0409") throws {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw INFError(path: path, line: nil, message: "cannot read the file")
        }
        try self.init(bytes: [UInt8](data), path: path, locale: locale)
    }

    public init(bytes: [UInt8], path: String, locale: String = "0409") throws {
        self.path = path
        let (text, encoding) = Self.decode(bytes)
        self.encoding = encoding
        try parse(text)
        substituteStrings(locale: locale)
        try readVersion()
    }

    public init(text: String, path: String, locale: String = "0409") throws {
        try self.init(bytes: Array(text.utf8), path: path, locale: locale)
    }

    public func section(_ name: String) -> INFSection? {
        sectionIndex[name.lowercased()].map { sections[$0] }
    }

    // MARK: Encoding

    static func decode(_ bytes: [UInt8]) -> (String, INFEncoding) {
        if bytes.starts(with: [0xFF, 0xFE]) {
            return (utf16(bytes.dropFirst(2), littleEndian: true), .utf16LE)
        }
        if bytes.starts(with: [0xFE, 0xFF]) {
            return (utf16(bytes.dropFirst(2), littleEndian: false), .utf16BE)
        }
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) {
            return (String(decoding: bytes.dropFirst(3), as: UTF8.self), .utf8BOM)
        }
        // INF text is almost all ASCII, so UTF-16LE without a BOM shows as NULs in the odd bytes.
        let sample = bytes.prefix(1024)
        if sample.count >= 4 {
            var oddNULs = 0, evenNULs = 0
            for (i, byte) in sample.enumerated() where byte == 0 {
                if i % 2 == 1 { oddNULs += 1 } else { evenNULs += 1 }
            }
            if oddNULs * 10 >= (sample.count / 2) * 7 && evenNULs * 10 < sample.count / 2 {
                return (utf16(bytes[...], littleEndian: true), .utf16LENoBOM)
            }
        }
        if let text = String(validating: bytes, as: UTF8.self) { return (text, .utf8) }
        return (String(bytes.map { windows1252($0) }.map(Character.init)), .windows1252)
    }

    private static func utf16(_ bytes: ArraySlice<UInt8>, littleEndian: Bool) -> String {
        var units: [UInt16] = []
        units.reserveCapacity(bytes.count / 2)
        var i = bytes.startIndex
        while i + 1 < bytes.endIndex {
            let a = UInt16(bytes[i]), b = UInt16(bytes[i + 1])
            units.append(littleEndian ? a | b << 8 : a << 8 | b)
            i += 2
        }
        return String(decoding: units, as: UTF16.self)
    }

    /// 0x80–0x9F differ from Latin-1 in Windows-1252; undefined ones stay as C1 controls.
    private static func windows1252(_ byte: UInt8) -> Unicode.Scalar {
        let table: [UInt32] = [
            0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x8D, 0x017D, 0x8F,
            0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
        ]
        if (0x80...0x9F).contains(byte), let scalar = Unicode.Scalar(table[Int(byte - 0x80)]) { return scalar }
        return Unicode.Scalar(byte)
    }

    // MARK: Syntax

    private mutating func parse(_ text: String) throws {
        var physical: [Substring] = []
        text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" || $0 == "\r" })
            .forEach { physical.append($0) }
        var current: Int? = nil
        var pending = ""
        var pendingStart = 0
        for (index, raw) in physical.enumerated() {
            let number = index + 1
            var content = try stripComment(raw, line: number)
            if pending.isEmpty { pendingStart = number }
            content = content.trimmingCharacters(in: .whitespaces)
            if content.hasSuffix("\\") {
                // A trailing backslash joins the next physical line, as Windows does.
                pending += content.dropLast()
                if index < physical.count - 1 { continue }
                content = ""
            }
            let logical = (pending + content).trimmingCharacters(in: .whitespaces)
            pending = ""
            if logical.isEmpty { continue }
            if logical.hasPrefix("[") {
                guard let close = logical.firstIndex(of: "]") else {
                    throw INFError(path: path, line: pendingStart, message: "section header is missing its closing ']'")
                }
                let name = logical[logical.index(after: logical.startIndex)..<close].trimmingCharacters(in: .whitespaces)
                let key = name.lowercased()
                // Repeated section headers add to the same section, as Windows merges them.
                if let existing = sectionIndex[key] {
                    current = existing
                } else {
                    sections.append(INFSection(name: name, lineNumber: pendingStart, lines: []))
                    sectionIndex[key] = sections.count - 1
                    current = sections.count - 1
                }
                continue
            }
            // Windows ignores lines before the first section header.
            guard let current else { continue }
            sections[current].lines.append(try tokenize(logical, line: pendingStart))
        }
    }

    private func stripComment(_ line: Substring, line number: Int) throws -> String {
        var inQuotes = false
        var end = line.endIndex
        for index in line.indices {
            let c = line[index]
            if c == "\"" { inQuotes.toggle() } else if c == ";" && !inQuotes {
                end = index
                break
            }
        }
        if inQuotes { throw INFError(path: path, line: number, message: "unterminated quoted string") }
        return String(line[..<end])
    }

    private func tokenize(_ line: String, line number: Int) throws -> INFLine {
        var fields: [String] = []
        var key: String? = nil
        var field = ""
        var inQuotes = false
        var chars = Array(line)
        chars.append(",")  // flushes the last field
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if inQuotes {
                if c == "\"" {
                    if i + 1 < chars.count - 1 && chars[i + 1] == "\"" {
                        field.append("\"")
                        i += 1
                    } else {
                        inQuotes = false
                    }
                } else {
                    field.append(c)
                }
            } else if c == "\"" {
                inQuotes = true
            } else if c == "=" && key == nil && fields.isEmpty {
                key = field.trimmingCharacters(in: .whitespaces)
                field = ""
            } else if c == "," && i == chars.count - 1 {
                fields.append(field.trimmingCharacters(in: .whitespaces))
            } else if c == "," {
                fields.append(field.trimmingCharacters(in: .whitespaces))
                field = ""
            } else {
                field.append(c)
            }
            i += 1
        }
        if inQuotes { throw INFError(path: path, line: number, message: "unterminated quoted string") }
        if key != nil && fields == [""] { fields = [] }
        return INFLine(key: key, values: fields, lineNumber: number)
    }

    // MARK: Strings

    private mutating func substituteStrings(locale: String) {
        var table: [String: String] = [:]
        // Lookup order: the wanted locale, then plain [Strings], then US English.
        for name in ["Strings.\(locale)", "Strings", "Strings.0409"].reversed() {
            guard let section = section(name) else { continue }
            var local: [String: String] = [:]
            for line in section.lines {
                guard let key = line.key?.lowercased(), local[key] == nil else { continue }
                local[key] = line.values.joined(separator: ",")
            }
            table.merge(local) { _, new in new }
        }
        for s in sections.indices where !sections[s].name.lowercased().hasPrefix("strings") {
            for l in sections[s].lines.indices {
                if let key = sections[s].lines[l].key { sections[s].lines[l].key = Self.substitute(key, table) }
                sections[s].lines[l].values = sections[s].lines[l].values.map { Self.substitute($0, table) }
            }
        }
    }

    static func substitute(_ text: String, _ table: [String: String]) -> String {
        guard text.contains("%") else { return text }
        var result = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "%") {
            result += rest[..<open]
            let afterOpen = rest.index(after: open)
            guard let close = rest[afterOpen...].firstIndex(of: "%") else {
                result += rest[open...]
                return result
            }
            let name = rest[afterOpen..<close]
            if name.isEmpty {
                result += "%"
            } else if let value = table[name.lowercased()] {
                result += value
            } else {
                // Windows leaves an unknown token in place; it shows up in the UI, not as a failure.
                result += rest[open...close]
            }
            rest = rest[rest.index(after: close)...]
        }
        return result + rest
    }

    // MARK: Version

    private mutating func readVersion() throws {
        guard let section = section("Version") else { return }
        version.signature = section.value("Signature")
        version.deviceClass = section.value("Class")
        version.classGUID = section.value("ClassGuid")
        version.provider = section.value("Provider")
        version.catalogFile = section.value("CatalogFile")
        guard let line = section.line("DriverVer") else { return }
        let values = line.values
        if let date = values.first, !date.isEmpty {
            let parts = date.split(separator: "/").map { Int($0.trimmingCharacters(in: .whitespaces)) }
            guard parts.count == 3, let month = parts[0], let day = parts[1], let year = parts[2],
                  (1...12).contains(month), (1...31).contains(day), year >= 1980 else {
                throw INFError(path: path, line: line.lineNumber, message: "DriverVer date '\(date)' is not mm/dd/yyyy")
            }
            version.driverDate = DriverDate(year: year, month: month, day: day)
        }
        if values.count > 1, !values[1].isEmpty {
            let parts = values[1].split(separator: ".", omittingEmptySubsequences: false).map { Int($0) }
            guard (1...4).contains(parts.count), parts.allSatisfy({ ($0 ?? -1) >= 0 && ($0 ?? 0) <= 65535 }) else {
                throw INFError(path: path, line: line.lineNumber, message: "DriverVer version '\(values[1])' is not w.x.y.z")
            }
            let numbers = parts.compactMap { $0 }
            version.driverVersion = DriverVersion(parts: numbers + Array(repeating: 0, count: 4 - numbers.count))
        }
    }

    /// `CatalogFile.NTamd64` wins over `CatalogFile.NT` over `CatalogFile` for the architecture.
    public func catalogFile(for architecture: Architecture) -> String? {
        guard let section = section("Version") else { return nil }
        for key in ["CatalogFile.NT\(architecture.rawValue)", "CatalogFile.NT", "CatalogFile"] {
            if let value = section.value(key), !value.isEmpty { return value }
        }
        return nil
    }

    // MARK: Manufacturer and models

    public var manufacturers: [INFManufacturer] {
        guard let section = section("Manufacturer") else { return [] }
        return section.lines.compactMap { line in
            // `%Mfg% = Base, NTamd64` or the bare form `Base` (the name then is the section's).
            let values = line.values
            guard let base = values.first, !base.isEmpty else { return nil }
            return INFManufacturer(name: line.key ?? base, modelsSection: base,
                                   decorations: values.dropFirst().filter { !$0.isEmpty }, lineNumber: line.lineNumber)
        }
    }

    /// The models section Windows would read for this manufacturer on `target`, or nil when
    /// the INF offers nothing for it (an arm64-only INF on amd64).
    public func modelsSection(for manufacturer: INFManufacturer, target: TargetOS) throws -> String? {
        let matching = manufacturer.decorations.compactMap { TargetOSDecoration($0) }.filter { $0.applies(to: target) }
        if let best = matching.max(by: { $0.specificity.lexicographicallyPrecedes($1.specificity) }) {
            let name = manufacturer.modelsSection + "." + best.text
            guard section(name) != nil else {
                throw INFError(path: path, line: manufacturer.lineNumber,
                               message: "[Manufacturer] refers to models section [\(name)], which does not exist")
            }
            return name
        }
        if section(manufacturer.modelsSection) != nil { return manufacturer.modelsSection }
        if manufacturer.decorations.isEmpty {
            throw INFError(path: path, line: manufacturer.lineNumber,
                           message: "[Manufacturer] refers to models section [\(manufacturer.modelsSection)], which does not exist")
        }
        return nil
    }

    public func models(for target: TargetOS) throws -> [INFModel] {
        var result: [INFModel] = []
        for manufacturer in manufacturers {
            guard let name = try modelsSection(for: manufacturer, target: target), let section = section(name) else { continue }
            for line in section.lines {
                guard let install = line.values.first, !install.isEmpty else { continue }
                let ids = line.values.dropFirst()
                let hardwareID = ids.first.flatMap { $0.isEmpty ? nil : $0 }
                result.append(INFModel(description: line.key ?? install, installSection: install, modelsSection: section.name,
                                       hardwareID: hardwareID, compatibleIDs: ids.dropFirst().filter { !$0.isEmpty },
                                       lineNumber: line.lineNumber))
            }
        }
        return result
    }

    /// The DDInstall section Windows uses: `.NTamd64`, then `.NT`, then undecorated.
    public func installSection(named name: String, for architecture: Architecture) -> INFSection? {
        for candidate in ["\(name).NT\(architecture.rawValue)", "\(name).NT", name] {
            if let section = section(candidate) { return section }
        }
        return nil
    }

    // MARK: Files

    /// File names CopyFiles directives of an install section (and its CoInstallers section) copy.
    public func copiedFiles(installSection name: String, architecture: Architecture, line: Int? = nil) throws -> [String] {
        guard let install = installSection(named: name, for: architecture) else {
            throw INFError(path: path, line: line, message: "install section [\(name)] does not exist for \(architecture.rawValue)")
        }
        var sectionsToRead = [install]
        if let co = section(install.name + ".CoInstallers") { sectionsToRead.append(co) }
        var files: [String] = []
        for section in sectionsToRead {
            for directive in section.lines where directive.key?.caseInsensitiveCompare("CopyFiles") == .orderedSame {
                for value in directive.values where !value.isEmpty {
                    if value.hasPrefix("@") {
                        files.append(String(value.dropFirst()))
                        continue
                    }
                    guard let list = self.section(value) else {
                        throw INFError(path: path, line: directive.lineNumber,
                                       message: "CopyFiles refers to section [\(value)], which does not exist")
                    }
                    for entry in list.lines {
                        // `dest[, source[, temp[, flags]]]`: the source name is the second field if given.
                        let fields = (entry.key.map { [$0] } ?? []) + entry.values
                        guard let destination = fields.first, !destination.isEmpty else { continue }
                        let source = fields.count > 1 && !fields[1].isEmpty ? fields[1] : destination
                        files.append(source)
                    }
                }
            }
        }
        return files
    }

    /// Where a source file lives relative to the INF, from `[SourceDisksFiles(.arch)]` and
    /// `[SourceDisksNames(.arch)]`; files the INF does not list are taken from its own folder.
    public func sourceFile(_ name: String, architecture: Architecture) -> INFSourceFile {
        func entry(_ key: String, in section: String) -> INFLine? {
            self.section("\(section).\(architecture.rawValue)")?.line(key) ?? self.section(section)?.line(key)
        }
        guard let file = entry(name, in: "SourceDisksFiles") else { return INFSourceFile(name: name, relativePath: name) }
        var components: [String] = []
        if let disk = file.values.first, !disk.isEmpty, let diskLine = entry(disk, in: "SourceDisksNames"), diskLine.values.count > 3 {
            components += Self.pathComponents(diskLine.values[3])
        }
        if file.values.count > 1 { components += Self.pathComponents(file.values[1]) }
        components.append(name)
        return INFSourceFile(name: name, relativePath: components.joined(separator: "/"))
    }

    private static func pathComponents(_ path: String) -> [String] {
        path.split(whereSeparator: { $0 == "\\" || $0 == "/" }).map(String.init).filter { $0 != "." && !$0.isEmpty }
    }

    /// Every file the INF needs for `target`: its catalog and the sources of each model's CopyFiles.
    public func requiredFiles(for target: TargetOS) throws -> [INFSourceFile] {
        var seen = Set<String>()
        var result: [INFSourceFile] = []
        func add(_ file: INFSourceFile) {
            if seen.insert(file.relativePath.lowercased()).inserted { result.append(file) }
        }
        if let catalog = catalogFile(for: target.architecture) { add(INFSourceFile(name: catalog, relativePath: catalog)) }
        var installs = Set<String>()
        for model in try models(for: target) where installs.insert(model.installSection.lowercased()).inserted {
            for name in try copiedFiles(installSection: model.installSection, architecture: target.architecture, line: model.lineNumber) {
                add(sourceFile(name, architecture: target.architecture))
            }
        }
        return result
    }
}

/// `NT[arch][.major[.minor[.productType[.suiteMask[.build]]]]]`, as [Manufacturer] decorates.
struct TargetOSDecoration {
    var text: String
    var architecture: String
    var major: Int?, minor: Int?, productType: Int?, build: Int?

    init?(_ text: String) {
        let lower = text.lowercased()
        guard lower.hasPrefix("nt") else { return nil }
        self.text = text
        let fields = lower.dropFirst(2).split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        architecture = fields.first ?? ""
        func number(_ i: Int) -> Int? {
            guard i < fields.count, !fields[i].isEmpty else { return nil }
            let f = fields[i]
            return f.hasPrefix("0x") ? Int(f.dropFirst(2), radix: 16) : Int(f)
        }
        major = number(1); minor = number(2); productType = number(3); build = number(5)
    }

    func applies(to target: TargetOS) -> Bool {
        if !architecture.isEmpty && architecture != target.architecture.rawValue { return false }
        let wanted = (major ?? 0, minor ?? 0)
        if wanted > (target.majorVersion, target.minorVersion) { return false }
        if let productType, productType != target.productType { return false }
        // A build number only narrows the decoration when the version is the target's own.
        if let build, wanted == (target.majorVersion, target.minorVersion), build > target.build { return false }
        return true
    }

    var specificity: [Int] {
        [architecture.isEmpty ? 0 : 1, major ?? 0, minor ?? 0, build ?? 0, productType == nil ? 0 : 1]
    }
}

extension INFError: ClassifiedError {
    public var failureKind: FailureKind { .badInput }
}
