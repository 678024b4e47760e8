import DiskModel
import Apply
import Foundation
import InstalledWindows
import Registry

extension DriverSearchPath {
    /// Edits the SOFTWARE hive on the Windows volume (NTFS device or folder).
    public static func add(_ folder: String = "%SystemDrive%\\Drivers", volume target: String) throws -> Change {
        let reader = try openVolumeFiles(target)
        let original: [UInt8]?
        do { original = try reader.read(hivePath); try reader.close() } catch { try? reader.close(); throw error }
        guard let original else { throw BootError.missingBootFiles(volume: target, path: hivePath.replacingOccurrences(of: "/", with: "\\")) }
        let (bytes, change) = try edit(hive: original, file: target + ":" + hivePath, adding: folder)
        guard change.old != change.new else { return change }
        let files = try openVolumeFiles(target)
        do { try files.write(Data(bytes), to: hivePath); try files.close() } catch { try? files.close(); throw error }
        return change
    }
}
