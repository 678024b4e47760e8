import Registry

/// Adds the injected drivers' folder to `HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion\DevicePath`
/// in an applied image (or one inside a WIM: the server's servicing), so that Plug and Play searches it (and its subfolders) when it installs
/// a device, as it does `%SystemRoot%\inf`. The SOFTWARE hive is edited in place.
public enum DriverSearchPath {
    public static let hivePath = "Windows/System32/config/SOFTWARE"
    public static let keyPath = "Microsoft\\Windows\\CurrentVersion"
    public static let valueName = "DevicePath"
    public static let defaultValue = "%SystemRoot%\\inf"

    public struct Change: Sendable {
        public var old: String?
        public var new: String
    }

    /// The DevicePath after adding `folder` (once, ignoring case), with what it was before.
    public static func updated(_ old: String?, adding folder: String) -> String {
        var entries = (old ?? defaultValue).split(separator: ";").map(String.init).filter { !$0.isEmpty }
        if !entries.contains(where: { $0.caseInsensitiveCompare(folder) == .orderedSame }) { entries.append(folder) }
        return entries.joined(separator: ";")
    }

    /// Edits a SOFTWARE hive's bytes.
    public static func edit(hive bytes: [UInt8], file: String, adding folder: String) throws -> (bytes: [UInt8], change: Change) {
        var editor = try HiveEditor(bytes: bytes, file: file)
        let old = try editor.value(valueName, inKey: keyPath)?.stringValue
        let new = updated(old, adding: folder)
        guard new != old else { return (bytes, Change(old: old, new: new)) }
        // REG_EXPAND_SZ, as Windows ships it: the %variables% expand when Plug and Play reads it.
        try editor.setValue(.string(valueName, new, type: .expandString), inKey: keyPath)
        return (editor.bytes(), Change(old: old, new: new))
    }
}
