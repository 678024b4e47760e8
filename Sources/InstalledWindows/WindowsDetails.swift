import Foundation
import Primitives
import Registry

/// What an installed Windows is, read from its own files without running it: the one reader
/// behind a captured image's WINDOWS element (wimlib's xml_windows.c reads the same values),
/// `imprint disk list` and the `windows.*` facts of a sequence.
///
/// - Architecture: the machine field of `System32\kernel32.dll`'s PE header.
/// - SOFTWARE, `Microsoft\Windows NT\CurrentVersion`: ProductName, EditionID,
///   InstallationType, DisplayVersion, UBR; CurrentMajorVersionNumber/CurrentMinorVersionNumber
///   (Windows 10 and later, where CurrentVersion stays "6.3"), else CurrentVersion
///   "MAJOR.MINOR"; CurrentBuild, or CurrentBuildNumber where CurrentBuild holds a dotted
///   obsolete string (Windows XP). `Microsoft\Windows\CurrentVersion\Setup\State` ImageState:
///   what sysprep left.
/// - SYSTEM, the current control set (`Select\Current`; ControlSet001 when there is none):
///   ComputerName\ComputerName, Windows\ShutdownTime (a FILETIME), Windows\CSDBuildNumber and
///   CSDVersion >> 8 (the service pack), ProductOptions\ProductType and ProductSuite, the HAL's
///   MatchingDeviceId, the subkeys of MUI\UILanguages and Nls\Language\InstallLanguage (a
///   hexadecimal LCID) by name.
///
/// A value that is missing is left out; a key that is missing leaves out what it holds.
public struct WindowsDetails: Sendable, Equatable {
    /// `x86`, `arm`, `ia64`, `x64` or `arm64`, as Windows names its platforms.
    public var architecture: String?
    public var productName: String?
    public var editionID: String?
    public var installationType: String?
    public var majorVersion: UInt64?
    public var minorVersion: UInt64?
    /// The build number as the registry spells it (`19045`).
    public var build: String?
    /// The update build revision (UBR): the monthly patch level within a build.
    public var updateBuildRevision: UInt64?
    /// The release name Windows shows (`22H2`).
    public var displayVersion: String?
    /// `IMAGE_STATE_COMPLETE`, `IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE`, ...
    public var imageState: String?
    public var computerName: String?
    /// When Windows last shut down, ISO 8601 in UTC (`2024-01-15T10:30:00Z`).
    public var lastShutdown: String?
    public var servicePackBuild: UInt64?
    public var servicePackLevel: UInt64?
    public var productType: String?
    public var productSuite: String?
    public var hal: String?
    public var languages: [String] = []
    public var defaultLanguage: String?

    public init() {}

    /// The files the details come from, relative to the system root folder (`Windows`).
    public enum SourceFile: String, Sendable, CaseIterable {
        case software = "System32/config/SOFTWARE"
        case system = "System32/config/SYSTEM"
        case kernel32 = "System32/kernel32.dll"

        /// Upper bound for reading one whole: a well-used Windows' SOFTWARE hive is a few
        /// hundred MiB at most, kernel32.dll about one.
        public var sizeLimit: UInt64 { self == .kernel32 ? 64 << 20 : 1 << 30 }
    }

    /// Reads every file through `contents` (nil: the file is not there) and takes what each
    /// holds. A file missing, unreadable or damaged leaves its values out and adds a sentence
    /// to `problems` naming `place` (the volume), the file and what was wrong; nothing throws,
    /// because a damaged Windows must not stop a listing or a capture.
    ///
    /// A hive Windows had not finished writing (it was running or hibernated, or was cut off)
    /// has its transaction logs replayed first, as Windows would at its next start: `logContents`
    /// reads a file beside it by its path relative to the system root
    /// (`System32/config/SOFTWARE.LOG1`; nil when there is none), and is called only for such a
    /// hive. Without usable logs the hive is read as the file is and a problem says its latest
    /// changes may be missing.
    public static func read(place: String, systemRoot: String = "Windows",
                            contents: (SourceFile) throws -> [UInt8]?,
                            logContents: (String) throws -> [UInt8]? = { _ in nil }) -> (details: WindowsDetails, problems: [String]) {
        var details = WindowsDetails()
        var problems: [String] = []
        for file in SourceFile.allCases {
            let path = systemRoot + "/" + file.rawValue
            let bytes: [UInt8]
            do {
                guard let read = try contents(file) else {
                    problems.append("\(place): no \(path)")
                    continue
                }
                bytes = read
            } catch {
                problems.append("\(place): \(path) could not be read: \(error)")
                continue
            }
            if file == .kernel32 {
                details.architecture = architecture(ofPE: bytes)
                if details.architecture == nil { problems.append("\(place): \(path) is not a PE file of a known processor") }
                continue
            }
            do {
                let hive = try Hive(bytes: bytes, file: place + ": " + path, path: file.rawValue, readingLogsWith: logContents)
                if let stale = hive.logReplayError {
                    problems.append("\(stale) (what is shown is read from the file as it is, without those changes)")
                }
                try file == .software ? details.readSoftware(hive) : details.readSystem(hive)
            } catch {
                problems.append("\(error)")
            }
        }
        return (details, problems)
    }

    // MARK: - The values

    /// `ImageState` values after `sysprep /generalize`: the image is ready to deploy to other
    /// machines (it gets a new SID and name at its first start).
    public static let generalizedImageStates: Set<String> = ["IMAGE_STATE_GENERALIZE_RESEAL_TO_OOBE", "IMAGE_STATE_GENERALIZE_RESEAL_TO_AUDIT"]
    /// Where `ImageState` is, in the SOFTWARE hive.
    public static let setupStateKey = "Microsoft\\Windows\\CurrentVersion\\Setup\\State"

    /// Whether sysprep generalized this Windows; nil when its image state is unknown (no
    /// readable SOFTWARE hive, or no ImageState in it).
    public var generalized: Bool? { imageState.map(Self.generalizedImageStates.contains) }

    /// `10.0.19045.3803`: major, minor, build and update revision, as `winver` shows them.
    public var version: String? {
        guard let majorVersion, let minorVersion else { return nil }
        return ["\(majorVersion)", "\(minorVersion)", build, updateBuildRevision.map(String.init)]
            .prefix { $0 != nil }.compactMap { $0 }.joined(separator: ".")
    }

    /// In a line for a technician: `Windows 10 Pro (Professional, Client), version 10.0.19045.3803
    /// (22H2), x64, computer PC-0042, not generalized (IMAGE_STATE_COMPLETE), last shut down
    /// 2024-01-15T10:30:00Z`; what is unknown is left out.
    public var summary: String {
        var parts: [String] = []
        let edition = [editionID, installationType].compactMap { $0 }.joined(separator: ", ")
        if let name = productName ?? editionID {
            parts.append(name + (productName != nil && !edition.isEmpty ? " (\(edition))" : ""))
        }
        if let version = version ?? build.map({ "build \($0)" }) {
            parts.append((self.version != nil ? "version " : "") + version + (displayVersion.map { " (\($0))" } ?? ""))
        }
        if let architecture { parts.append(architecture) }
        if let computerName { parts.append("computer \(computerName)") }
        if let imageState, let generalized {
            parts.append((generalized ? "generalized" : "not generalized") + " (\(imageState))")
        }
        if let lastShutdown { parts.append("last shut down \(lastShutdown)") }
        return parts.isEmpty ? "nothing known" : parts.joined(separator: ", ")
    }

    /// The Windows API's code for the architecture (PROCESSOR_ARCHITECTURE_*), as a WIM's XML
    /// stores it: 0 x86, 5 ARM, 6 IA-64, 9 x64, 12 ARM64.
    public var architectureCode: Int? { architecture.flatMap { Self.architectureCodes[$0] } }

    public static let architectureCodes: [String: Int] = ["x86": 0, "arm": 5, "ia64": 6, "x64": 9, "arm64": 12]

    /// The architecture a PE file (kernel32.dll) was built for, from its header's machine field
    /// (at the offset in 0x3C, after "PE\0\0"); nil when it is no PE file or of another machine.
    public static func architecture(ofPE bytes: [UInt8]) -> String? {
        guard bytes.count >= 0x40 else { return nil }
        let peOffset = Int(bytes.le32(0x3C))
        guard peOffset + 6 <= bytes.count, bytes[peOffset..<peOffset + 4].elementsEqual([0x50, 0x45, 0, 0]) else { return nil }
        switch bytes.le16(peOffset + 4) {
        case 0x014C: return "x86"
        case 0x01C0, 0x01C2, 0x01C4: return "arm"
        case 0x0200: return "ia64"
        case 0x8664: return "x64"
        case 0xAA64: return "arm64"
        default: return nil
        }
    }

    /// What the SOFTWARE hive says; throws only for a hive damaged on the way to a key.
    public mutating func readSoftware(_ hive: Hive) throws {
        if let state = try hive.key(at: Self.setupStateKey) {
            imageState = Self.text(state.value("ImageState"))
        }
        guard let version = try hive.key(at: "Microsoft\\Windows NT\\CurrentVersion") else { return }
        func string(_ name: String) -> String? { Self.text(version.value(name)) }
        productName = string("ProductName")
        editionID = string("EditionID")
        installationType = string("InstallationType")
        displayVersion = string("DisplayVersion")
        updateBuildRevision = Self.number(version.value("UBR"))
        if let major = Self.number(version.value("CurrentMajorVersionNumber")),
           let minor = Self.number(version.value("CurrentMinorVersionNumber")) {
            (majorVersion, minorVersion) = (major, minor)
        } else if let current = string("CurrentVersion") {
            let parts = current.split(separator: ".")
            if parts.count == 2, let major = UInt64(parts[0]), let minor = UInt64(parts[1]) {
                (majorVersion, minorVersion) = (major, minor)
            }
        }
        if let current = string("CurrentBuild") {
            build = current.contains(".") ? string("CurrentBuildNumber") : current
        }
    }

    /// What the SYSTEM hive says; throws only for a hive damaged on the way to a key.
    public mutating func readSystem(_ hive: Hive) throws {
        let control = Self.currentControlSet(try hive.key(at: "Select")) + "\\Control"
        if let name = try hive.key(at: control + "\\ComputerName\\ComputerName") {
            computerName = Self.text(name.value("ComputerName"))
        }
        if let windows = try hive.key(at: control + "\\Windows") {
            servicePackBuild = Self.number(windows.value("CSDBuildNumber"))
            servicePackLevel = Self.number(windows.value("CSDVersion")).map { $0 >> 8 }
            if let time = windows.value("ShutdownTime"), time.data.count == 8 {
                lastShutdown = Self.iso8601(fileTime: time.data.le64(0))
            }
        }
        if let options = try hive.key(at: control + "\\ProductOptions") {
            productType = Self.text(options.value("ProductType"))
            productSuite = Self.text(options.value("ProductSuite"))
        }
        if let halKey = try hive.key(at: control + "\\Class\\{4D36E966-E325-11CE-BFC1-08002BE10318}\\0000") {
            hal = Self.text(halKey.value("MatchingDeviceId"))
        }
        if let uiLanguages = try hive.key(at: control + "\\MUI\\UILanguages") {
            languages = uiLanguages.subkeys.map(\.name)
        }
        if let nls = try hive.key(at: control + "\\Nls\\Language"),
           let install = Self.text(nls.value("InstallLanguage")), let lcid = UInt16(install, radix: 16) {
            defaultLanguage = Self.languageNames[lcid]
        }
    }

    /// `ControlSet00N` for the `Select` key's `Current` (what Windows booted with last);
    /// ControlSet001, the one every installation has, without it.
    static func currentControlSet(_ select: RegistryKey?) -> String {
        let current = number(select?.value("Current")).flatMap { (1...999).contains($0) ? $0 : nil } ?? 1
        return "ControlSet" + String(repeating: "0", count: 3 - String(current).count) + String(current)
    }

    /// A FILETIME (100 ns since 1601-01-01 UTC) as ISO 8601 UTC; nil for zero or a time past
    /// year 9999, which no Windows wrote.
    static func iso8601(fileTime: UInt64) -> String? {
        let secondsFrom1601ToUnixEpoch: Int64 = 11_644_473_600
        let seconds = Int64(fileTime / 10_000_000) - secondsFrom1601ToUnixEpoch
        guard fileTime > 0, seconds < 253_402_300_800 else { return nil }
        let formatter = ISO8601DateFormatter()
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: Date(timeIntervalSince1970: TimeInterval(seconds)))
    }

    /// A string value (REG_SZ, REG_EXPAND_SZ; the first string of a REG_MULTI_SZ).
    static func text(_ value: RegistryValue?) -> String? {
        guard let value else { return nil }
        if let s = value.stringValue { return s }
        return value.multiStringValue?.first
    }

    /// A number: REG_DWORD, REG_QWORD, or a decimal string.
    static func number(_ value: RegistryValue?) -> UInt64? {
        guard let value else { return nil }
        if let d = value.dwordValue { return UInt64(d) }
        if value.type == RegistryValueType.qword.rawValue, value.data.count == 8 { return value.data.le64(0) }
        return value.stringValue.flatMap { UInt64($0) }
    }

    /// Language IDs (LCIDs) of the languages Windows ships in, by their names.
    static let languageNames: [UInt16: String] = [
        0x0401: "ar-SA", 0x0402: "bg-BG", 0x0403: "ca-ES", 0x0404: "zh-TW", 0x0405: "cs-CZ", 0x0406: "da-DK",
        0x0407: "de-DE", 0x0408: "el-GR", 0x0409: "en-US", 0x040B: "fi-FI", 0x040C: "fr-FR", 0x040D: "he-IL",
        0x040E: "hu-HU", 0x0410: "it-IT", 0x0411: "ja-JP", 0x0412: "ko-KR", 0x0413: "nl-NL", 0x0414: "nb-NO",
        0x0415: "pl-PL", 0x0416: "pt-BR", 0x0418: "ro-RO", 0x0419: "ru-RU", 0x041A: "hr-HR", 0x041B: "sk-SK",
        0x041D: "sv-SE", 0x041E: "th-TH", 0x041F: "tr-TR", 0x0422: "uk-UA", 0x0424: "sl-SI", 0x0425: "et-EE",
        0x0426: "lv-LV", 0x0427: "lt-LT", 0x042D: "eu-ES", 0x0456: "gl-ES", 0x0804: "zh-CN", 0x0809: "en-GB",
        0x080A: "es-MX", 0x0816: "pt-PT", 0x081A: "sr-Latn-CS", 0x0C0A: "es-ES", 0x0C0C: "fr-CA", 0x241A: "sr-Latn-RS",
        0x0C04: "zh-HK",
    ]
}

/// The JSON `imprint disk list --json` prints: the values as stored, plus the version and
/// whether sysprep generalized it, which follow from them.
extension WindowsDetails: Codable {
    enum CodingKeys: String, CodingKey {
        case architecture, productName, editionID, installationType, majorVersion, minorVersion, build, updateBuildRevision,
             displayVersion, imageState, computerName, lastShutdown, servicePackBuild, servicePackLevel, productType,
             productSuite, hal, languages, defaultLanguage
    }

    enum DerivedKeys: String, CodingKey { case version, generalized }

    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        architecture = try c.decodeIfPresent(String.self, forKey: .architecture)
        productName = try c.decodeIfPresent(String.self, forKey: .productName)
        editionID = try c.decodeIfPresent(String.self, forKey: .editionID)
        installationType = try c.decodeIfPresent(String.self, forKey: .installationType)
        majorVersion = try c.decodeIfPresent(UInt64.self, forKey: .majorVersion)
        minorVersion = try c.decodeIfPresent(UInt64.self, forKey: .minorVersion)
        build = try c.decodeIfPresent(String.self, forKey: .build)
        updateBuildRevision = try c.decodeIfPresent(UInt64.self, forKey: .updateBuildRevision)
        displayVersion = try c.decodeIfPresent(String.self, forKey: .displayVersion)
        imageState = try c.decodeIfPresent(String.self, forKey: .imageState)
        computerName = try c.decodeIfPresent(String.self, forKey: .computerName)
        lastShutdown = try c.decodeIfPresent(String.self, forKey: .lastShutdown)
        servicePackBuild = try c.decodeIfPresent(UInt64.self, forKey: .servicePackBuild)
        servicePackLevel = try c.decodeIfPresent(UInt64.self, forKey: .servicePackLevel)
        productType = try c.decodeIfPresent(String.self, forKey: .productType)
        productSuite = try c.decodeIfPresent(String.self, forKey: .productSuite)
        hal = try c.decodeIfPresent(String.self, forKey: .hal)
        languages = try c.decodeIfPresent([String].self, forKey: .languages) ?? []
        defaultLanguage = try c.decodeIfPresent(String.self, forKey: .defaultLanguage)
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encodeIfPresent(architecture, forKey: .architecture)
        try c.encodeIfPresent(productName, forKey: .productName)
        try c.encodeIfPresent(editionID, forKey: .editionID)
        try c.encodeIfPresent(installationType, forKey: .installationType)
        try c.encodeIfPresent(majorVersion, forKey: .majorVersion)
        try c.encodeIfPresent(minorVersion, forKey: .minorVersion)
        try c.encodeIfPresent(build, forKey: .build)
        try c.encodeIfPresent(updateBuildRevision, forKey: .updateBuildRevision)
        try c.encodeIfPresent(displayVersion, forKey: .displayVersion)
        try c.encodeIfPresent(imageState, forKey: .imageState)
        try c.encodeIfPresent(computerName, forKey: .computerName)
        try c.encodeIfPresent(lastShutdown, forKey: .lastShutdown)
        try c.encodeIfPresent(servicePackBuild, forKey: .servicePackBuild)
        try c.encodeIfPresent(servicePackLevel, forKey: .servicePackLevel)
        try c.encodeIfPresent(productType, forKey: .productType)
        try c.encodeIfPresent(productSuite, forKey: .productSuite)
        try c.encodeIfPresent(hal, forKey: .hal)
        if !languages.isEmpty { try c.encode(languages, forKey: .languages) }
        try c.encodeIfPresent(defaultLanguage, forKey: .defaultLanguage)
        var derived = encoder.container(keyedBy: DerivedKeys.self)
        try derived.encodeIfPresent(version, forKey: .version)
        try derived.encodeIfPresent(generalized, forKey: .generalized)
    }
}
