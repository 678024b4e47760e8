import DiskModel
import Foundation
import Primitives

/// mkfs.ntfs seeds its volume serial number from the clock, so two volumes formatted in the
/// same second (Windows and Recovery) get the same one. Windows tells volumes apart by it, so
/// each new volume gets a random serial, in its boot sector and in the backup boot sector.
enum NTFSSerial {
    static func randomize(device: String) throws(DiskError) -> UInt64 {
        let descriptor = open(device, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw DiskError.io(path: device, operation: "open to set the NTFS serial number", errno: errno) }
        defer { close(descriptor) }
        var serial: UInt64 = 0
        while serial == 0 { serial = UInt64.random(in: .min ... .max) }
        let serialBytes = serial.littleEndianBytes
        var boot = [UInt8](repeating: 0, count: 512)
        guard pread(descriptor, &boot, 512, 0) == 512, isNTFSBootSector(boot) else {
            throw DiskError.formatNotVisible(path: device, expected: "an NTFS boot sector", found: "something else at byte 0")
        }
        let bytesPerSector = UInt64(boot.le16(0x0B))
        let totalSectors = boot.le64(0x28)
        var offsets: [off_t] = [0]
        // mkfs.ntfs keeps the backup boot sector just past the volume's last sector.
        let backup = totalSectors.multipliedReportingOverflow(by: bytesPerSector)
        var backupSector = [UInt8](repeating: 0, count: 512)
        if !backup.overflow, backup.partialValue < UInt64(Int64.max),
           pread(descriptor, &backupSector, 512, off_t(backup.partialValue)) == 512, isNTFSBootSector(backupSector) {
            offsets.append(off_t(backup.partialValue))
        }
        for offset in offsets {
            guard pwrite(descriptor, serialBytes, 8, offset + 0x48) == 8 else {
                throw DiskError.io(path: device, operation: "write the NTFS serial number at \(offset + 0x48)", errno: errno)
            }
        }
        guard fsync(descriptor) == 0 else { throw DiskError.io(path: device, operation: "fsync", errno: errno) }
        return serial
    }

    private static func isNTFSBootSector(_ sector: [UInt8]) -> Bool {
        sector.count >= 512 && Array(sector[3..<11]) == Array("NTFS    ".utf8) && sector[510] == 0x55 && sector[511] == 0xAA
    }
}
