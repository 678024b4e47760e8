/// What makes a disk *this* disk: checked again just before every destructive write, so a
/// disk swapped, re-enumerated (sdb became sdc) or resized since the plan is never written.
public struct DiskIdentity: Sendable, Codable, Equatable {
    public var path: String
    public var deviceNumber: String
    public var size: UInt64
    public var logicalSectorSize: Int
    public var serial: String?
    public var wwn: String?
    public var model: String?
    public var backingFile: String?

    public init(_ disk: Disk) {
        path = disk.path
        deviceNumber = disk.deviceNumber
        size = disk.size
        logicalSectorSize = disk.logicalSectorSize
        serial = disk.serial
        wwn = disk.wwn
        model = disk.model
        backingFile = disk.backingFile
    }

    /// Every difference between the planned disk and `current`, or nothing when they agree.
    public func differences(from current: Disk) -> [String] {
        let now = DiskIdentity(current)
        var found: [String] = []
        func compare<T: Equatable>(_ what: String, _ planned: T, _ actual: T, _ show: (T) -> String) {
            if planned != actual { found.append("\(what) was \(show(planned)), is now \(show(actual))") }
        }
        let text: (String?) -> String = { $0.map { "\"\($0)\"" } ?? "unknown" }
        compare("path", path, now.path) { $0 }
        compare("device number", deviceNumber, now.deviceNumber) { $0 }
        compare("size", size, now.size) { ByteSize.format($0) + " (\($0) bytes)" }
        compare("sector size", logicalSectorSize, now.logicalSectorSize) { String($0) }
        compare("serial", serial, now.serial, text)
        compare("WWN", wwn, now.wwn, text)
        compare("model", model, now.model, text)
        compare("backing file", backingFile, now.backingFile, text)
        return found
    }
}
