import Primitives
import Registry
import WIM

/// The WINDOWS element of a captured image's XML (and FLAGS, DISPLAYNAME, DISPLAYDESCRIPTION),
/// read from the captured files as wimlib describes its own behaviour (its xml_windows.c):
///
/// - The system root is the top-level folder holding the most of System32\kernel32.dll,
///   System32\config\SOFTWARE and System32\config\SYSTEM ("Windows" on a tie); SYSTEMROOT is
///   its name in capitals. None of them anywhere: not a Windows image, no WINDOWS element.
/// - ARCH: the machine field of kernel32.dll's PE header (at the offset in 0x3C, after "PE\0\0")
///   as the Windows API numbers it: 0x14C → 0 (x86), 0x1C0/0x1C2/0x1C4 → 5 (ARM),
///   0x200 → 6 (IA-64), 0x8664 → 9 (x64), 0xAA64 → 12 (ARM64).
/// - SOFTWARE, `Microsoft\Windows NT\CurrentVersion`: ProductName (PRODUCTNAME, also DISPLAYNAME
///   and DISPLAYDESCRIPTION), EditionID (EDITIONID, also FLAGS), InstallationType;
///   CurrentMajorVersionNumber/CurrentMinorVersionNumber (Windows 10 and later, where
///   CurrentVersion stays "6.3"), else CurrentVersion "MAJOR.MINOR"; CurrentBuild, or
///   CurrentBuildNumber where CurrentBuild holds a dotted obsolete string (Windows XP).
/// - SYSTEM, `ControlSet001\Control`: Windows\CSDBuildNumber (SPBUILD), Windows\CSDVersion
///   >> 8 (SPLEVEL), ProductOptions\ProductType and ProductSuite, the HAL's MatchingDeviceId
///   (Class\{4D36E966-E325-11CE-BFC1-08002BE10318}\0000), the subkeys of MUI\UILanguages
///   (LANGUAGE each) and Nls\Language\InstallLanguage, a hexadecimal LCID, by name (DEFAULT).
/// Whatever is missing or unreadable is left out; a capture never fails for it.
public enum WindowsImageDetails {
    /// The details, or nil when the tree holds no Windows installation.
    public static func read(items: [CaptureItem], source: CaptureSource) -> WIMWriter.ImageInfo.Windows? {
        guard let root = items.first else { return nil }
        func child(_ folder: Int, _ name: String) -> Int? {
            items[folder].children.first { items[$0].name.equalsIgnoringCase(name) }
        }
        var best: (root: Int, kernel32: Int?, software: Int?, system: Int?, score: Int)?
        for candidate in root.children where items[candidate].isDirectory {
            guard let system32 = child(candidate, "System32") else { continue }
            let kernel32 = child(system32, "kernel32.dll")
            let config = child(system32, "config")
            let software = config.flatMap { child($0, "SOFTWARE") }
            let system = config.flatMap { child($0, "SYSTEM") }
            let score = [kernel32, software, system].compactMap { $0 }.count
            guard score > 0 else { continue }
            // A tie goes to the folder named Windows.
            let bestScore = best?.score ?? 0
            if score > bestScore || (score == bestScore && items[candidate].name.equalsIgnoringCase("Windows")) {
                best = (candidate, kernel32, software, system, score)
            }
        }
        guard let found = best else { return nil }
        var windows = WIMWriter.ImageInfo.Windows()
        windows.systemRoot = items[found.root].name.uppercased()
        if let kernel32 = found.kernel32, let bytes = contents(items[kernel32], source, limit: 64 << 20) {
            windows.architecture = architecture(ofPE: bytes)
        }
        if let software = found.software, let bytes = contents(items[software], source, limit: 1 << 30),
           let hive = try? Hive(bytes: bytes, file: items[software].path) {
            readSoftware(hive, into: &windows)
        }
        if let system = found.system, let bytes = contents(items[system], source, limit: 1 << 30),
           let hive = try? Hive(bytes: bytes, file: items[system].path) {
            readSystem(hive, into: &windows)
        }
        return windows
    }

    /// The Windows API's architecture code for a PE file's machine field.
    public static func architecture(ofPE bytes: [UInt8]) -> Int? {
        guard bytes.count >= 0x40 else { return nil }
        let peOffset = Int(bytes.le32(at: 0x3C))
        guard peOffset + 6 <= bytes.count, bytes[peOffset..<peOffset + 4].elementsEqual([0x50, 0x45, 0, 0]) else { return nil }
        switch UInt16(bytes[peOffset + 4]) | UInt16(bytes[peOffset + 5]) << 8 {
        case 0x014C: return 0
        case 0x01C0, 0x01C2, 0x01C4: return 5
        case 0x0200: return 6
        case 0x8664: return 9
        case 0xAA64: return 12
        default: return nil
        }
    }

    static func readSoftware(_ hive: Hive, into windows: inout WIMWriter.ImageInfo.Windows) {
        guard let version = try? hive.key(at: "Microsoft\\Windows NT\\CurrentVersion") else { return }
        func string(_ name: String) -> String? { text(version.value(name)) }
        windows.productName = string("ProductName")
        windows.editionID = string("EditionID")
        windows.installationType = string("InstallationType")
        if let major = number(version.value("CurrentMajorVersionNumber")), let minor = number(version.value("CurrentMinorVersionNumber")) {
            (windows.majorVersion, windows.minorVersion) = (major, minor)
        } else if let current = string("CurrentVersion") {
            let parts = current.split(separator: ".")
            if parts.count == 2, let major = UInt64(parts[0]), let minor = UInt64(parts[1]) {
                (windows.majorVersion, windows.minorVersion) = (major, minor)
            }
        }
        if let build = string("CurrentBuild") {
            windows.build = build.contains(".") ? string("CurrentBuildNumber") : build
        }
    }

    static func readSystem(_ hive: Hive, into windows: inout WIMWriter.ImageInfo.Windows) {
        if let key = try? hive.key(at: "ControlSet001\\Control\\Windows") {
            windows.servicePackBuild = number(key.value("CSDBuildNumber"))
            windows.servicePackLevel = number(key.value("CSDVersion")).map { $0 >> 8 }
        }
        if let options = try? hive.key(at: "ControlSet001\\Control\\ProductOptions") {
            windows.productType = text(options.value("ProductType"))
            windows.productSuite = text(options.value("ProductSuite"))
        }
        if let hal = try? hive.key(at: "ControlSet001\\Control\\Class\\{4D36E966-E325-11CE-BFC1-08002BE10318}\\0000") {
            windows.hal = text(hal.value("MatchingDeviceId"))
        }
        if let languages = try? hive.key(at: "ControlSet001\\Control\\MUI\\UILanguages") {
            windows.languages = languages.subkeys.map(\.name)
        }
        if let nls = try? hive.key(at: "ControlSet001\\Control\\Nls\\Language"),
           let install = text(nls.value("InstallLanguage")), let lcid = UInt16(install, radix: 16) {
            windows.defaultLanguage = languageNames[lcid]
        }
    }

    /// A string value (REG_SZ, REG_EXPAND_SZ; the first string of a REG_MULTI_SZ).
    private static func text(_ value: RegistryValue?) -> String? {
        guard let value else { return nil }
        if let s = value.stringValue { return s }
        return value.multiStringValue?.first
    }

    /// A number: REG_DWORD, REG_QWORD, or a decimal string.
    private static func number(_ value: RegistryValue?) -> UInt64? {
        guard let value else { return nil }
        if let d = value.dwordValue { return UInt64(d) }
        if value.type == 11, value.data.count == 8 {
            return value.data.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        }
        return value.stringValue.flatMap { UInt64($0) }
    }

    /// A whole file's unnamed stream, or nil (too large, unreadable, empty).
    private static func contents(_ item: CaptureItem, _ source: CaptureSource, limit: UInt64) -> [UInt8]? {
        guard let size = item.dataSize, size > 0, size <= limit else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(Int(size))
        do {
            try source.readData(of: item, stream: nil) { bytes += $0 }
        } catch {
            return nil
        }
        return bytes
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

extension String {
    fileprivate func equalsIgnoringCase(_ other: String) -> Bool { uppercased() == other.uppercased() }
}

extension Array where Element == UInt8 {
    fileprivate func le32(at offset: Int) -> UInt32 {
        UInt32(self[offset]) | UInt32(self[offset + 1]) << 8 | UInt32(self[offset + 2]) << 16 | UInt32(self[offset + 3]) << 24
    }
}
