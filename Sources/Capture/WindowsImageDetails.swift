import InstalledWindows
import WIM

/// The WINDOWS element of a captured image's XML (and FLAGS, DISPLAYNAME, DISPLAYDESCRIPTION),
/// read from the captured files as wimlib describes its own behaviour (its xml_windows.c):
///
/// - The system root is the top-level folder holding the most of System32\kernel32.dll,
///   System32\config\SOFTWARE and System32\config\SYSTEM ("Windows" on a tie); SYSTEMROOT is
///   its name in capitals. None of them anywhere: not a Windows image, no WINDOWS element.
/// - Everything else is what `WindowsDetails` reads from those three files (the reader
///   `imprint disk list` and the `windows.*` facts use too): ARCH as the Windows API numbers
///   it (0 x86, 5 ARM, 6 IA-64, 9 x64, 12 ARM64), PRODUCTNAME (also DISPLAYNAME and
///   DISPLAYDESCRIPTION), EDITIONID (also FLAGS), INSTALLATIONTYPE, the version and build, and
///   from SYSTEM's control set SPBUILD, SPLEVEL, PRODUCTTYPE, PRODUCTSUITE, HAL, LANGUAGES and
///   the DEFAULT one. That control set is the current one (`Select\Current`) where wimlib
///   always reads ControlSet001: the two differ only for a Windows whose last boot used
///   another set, and then the current one is what that Windows runs with.
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
        let files: [WindowsDetails.SourceFile: Int] = [.kernel32: found.kernel32, .software: found.software, .system: found.system]
            .compactMapValues { $0 }
        // What cannot be read is left out, as wimlib leaves it out: a capture never fails for it.
        let (details, _) = WindowsDetails.read(place: "the captured tree", systemRoot: items[found.root].name, contents: { file in
            files[file].flatMap { contents(items[$0], source, limit: file.sizeLimit) }
        }, logContents: { path in
            // A dirty hive's logs, found by name (any case) below the system root.
            var item: Int? = found.root
            for part in path.split(separator: "/") { item = item.flatMap { child($0, String(part)) } }
            return item.flatMap { contents(items[$0], source, limit: WindowsDetails.SourceFile.system.sizeLimit) }
        })
        var windows = WIMWriter.ImageInfo.Windows()
        windows.systemRoot = items[found.root].name.uppercased()
        windows.architecture = details.architectureCode
        windows.productName = details.productName
        windows.editionID = details.editionID
        windows.installationType = details.installationType
        (windows.majorVersion, windows.minorVersion, windows.build) = (details.majorVersion, details.minorVersion, details.build)
        (windows.servicePackBuild, windows.servicePackLevel) = (details.servicePackBuild, details.servicePackLevel)
        (windows.productType, windows.productSuite, windows.hal) = (details.productType, details.productSuite, details.hal)
        (windows.languages, windows.defaultLanguage) = (details.languages, details.defaultLanguage)
        return windows
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
}

extension String {
    fileprivate func equalsIgnoringCase(_ other: String) -> Bool { uppercased() == other.uppercased() }
}
