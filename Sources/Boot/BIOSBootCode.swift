import Foundation
import Primitives

/// The boot code of a BIOS/MBR disk: GRUB's i386-pc build, set up to start Windows' `bootmgr`.
///
/// Microsoft's MBR and NTFS boot sector code is not ours to copy, and a real-mode NTFS reader
/// of our own would be a second boot loader to maintain; GRUB is free, maintained, in Debian
/// (`grub-pc-bin`), and its `ntldr` command starts `bootmgr` the way Windows' volume boot
/// record does. Imprint installs it as GRUB's own `grub-bios-setup` would:
///
/// - `boot.img` (512 bytes) goes into the MBR's code area, bytes 0–439, keeping the disk
///   signature and the partition table after it; the same code goes into the boot sector of
///   the active system partition (keeping the NTFS BIOS parameter block, bytes 3–89), so a
///   disk whose MBR another tool rewrites with Windows' own MBR still reaches GRUB.
/// - `core.img` (GRUB's kernel, the modules `biosdisk part_msdos ntfs ntldr boot` and a
///   two-line configuration `ntldr /bootmgr`, `boot`, built by `grub-mkimage`) goes into the gap between the MBR and the first
///   partition, from sector 1: partitions start at 1 MiB, the gap holds 2047 sectors and
///   core.img needs about 85.
///
/// Format facts (GRUB 2.06, include/grub/i386/pc/boot.h and boot/i386/pc/{boot,diskboot}.S,
/// read for their layout only):
/// - boot.img: 0x03..<0x5A the BPB area, kept from the sector it replaces; 0x5C the 64-bit LBA
///   of core.img's first sector; 0x64 the boot drive (0xFF: the drive the BIOS passed in DL);
///   0x66 a two-byte jump over the check that replaces a DL no hard disk has (a floppy's, or
///   a buggy BIOS's) by 0x80: grub-setup makes it two NOPs on hard disks, and so do we;
///   0x1B8 onwards belongs to the partition table.
/// - core.img's first sector (diskboot.img) ends with a block list read backwards from
///   0x1F4: each entry a 64-bit LBA, a 16-bit sector count and a 16-bit load segment
///   (0x0820); an entry with count 0 ends the list. One entry, the sectors after the first,
///   says where the rest of core.img is.
/// - The prefix `(,msdosN)/` compiled into core.img makes GRUB's root the Nth partition of the
///   drive it was started from, whatever the BIOS numbers that drive: the system partition's
///   number is part of core.img, so one is built per partition number (1–4).
public struct BIOSBootCode: Sendable {
    /// `boot` is a module of its own: without it core.img loads bootmgr and never starts it.
    public static let modules = ["biosdisk", "part_msdos", "ntfs", "ntldr", "boot"]
    public static let configuration = "ntldr /bootmgr\nboot\n"
    /// Where the boot environment keeps the files `imprint boot bios-code` builds.
    public static let installedDirectory = "/usr/lib/imprint/bios-boot"
    public static let grubDirectory = "/usr/lib/grub/i386-pc"

    static let sector = 512
    static let bpbRange = 0x03..<0x5A
    static let kernelSectorOffset = 0x5C
    static let bootDriveOffset = 0x64
    static let driveCheckOffset = 0x66
    static let partitionTableStart = 0x1B8
    static let blockListOffset = 0x1F4
    static let coreLoadSegment: UInt16 = 0x0820

    public let bootImage: [UInt8]
    public let coreImage: [UInt8]
    /// The system partition's number (1–4) compiled into core.img.
    public let partitionNumber: Int

    public static func coreName(partition: Int) -> String { "core-msdos\(partition).img" }

    public init(bootImage: [UInt8], coreImage: [UInt8], partitionNumber: Int, source: String) throws(BootError) {
        guard bootImage.count == Self.sector, bootImage[510] == 0x55, bootImage[511] == 0xAA else {
            throw BootError.badBootCode(file: source + "/boot.img", reason: "not a 512-byte boot sector ending in 55 AA")
        }
        guard coreImage.count > Self.sector, coreImage.count <= 1024 * Self.sector else {
            throw BootError.badBootCode(file: source + "/" + Self.coreName(partition: partitionNumber),
                                        reason: "\(coreImage.count) bytes: not a GRUB core image (one sector to 512 KiB)")
        }
        self.bootImage = bootImage
        self.coreImage = coreImage
        self.partitionNumber = partitionNumber
    }

    /// Builds boot.img and one core image per MBR partition number into `directory` (what
    /// the boot environment ships, and what `load` builds for itself when nothing is shipped).
    public static func build(into directory: String, grub: String = grubDirectory) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let configuration = directory + "/early.cfg"
        try Data(Self.configuration.utf8).write(to: URL(fileURLWithPath: configuration))
        defer { try? FileManager.default.removeItem(atPath: configuration) }
        for number in 1...4 {
            _ = try BootTool.run(["grub-mkimage", "-O", "i386-pc", "-d", grub, "-o", directory + "/" + coreName(partition: number),
                                  "-p", "(,msdos\(number))/", "-c", configuration] + modules)
        }
        let boot = try Data(contentsOf: URL(fileURLWithPath: grub + "/boot.img"))
        try boot.write(to: URL(fileURLWithPath: directory + "/boot.img"))
    }

    /// The boot code for a system partition numbered `partition`: from `directory` (or the
    /// boot environment's), else built now with grub-mkimage.
    public static func load(partition: Int, directory: String? = nil) throws -> BIOSBootCode {
        guard (1...4).contains(partition) else {
            throw BootError.unsupported("the system partition is partition \(partition): BIOS boot needs it among the MBR's four primary partitions")
        }
        var source = directory ?? installedDirectory
        var scratch: String?
        if directory == nil, !FileManager.default.fileExists(atPath: source + "/" + coreName(partition: partition)) {
            let built = NSTemporaryDirectory() + "imprint-bios-boot-\(UUID().uuidString.prefix(8))"
            do {
                try build(into: built)
            } catch {
                try? FileManager.default.removeItem(atPath: built)
                throw BootError.unsupported("no BIOS boot code in \(installedDirectory), and it cannot be built here (\(error)); install grub-pc-bin")
            }
            source = built
            scratch = built
        }
        defer { if let scratch { try? FileManager.default.removeItem(atPath: scratch) } }
        func read(_ name: String) throws -> [UInt8] {
            guard let data = FileManager.default.contents(atPath: source + "/" + name) else {
                throw BootError.badBootCode(file: source + "/" + name, reason: "cannot be read")
            }
            return [UInt8](data)
        }
        return try BIOSBootCode(bootImage: read("boot.img"), coreImage: read(coreName(partition: partition)),
                                partitionNumber: partition, source: source)
    }

    /// What is written where: computed from the disk's current first sectors, so a test (or
    /// `plan`) can see every byte before anything is written.
    public struct Writes: Sendable {
        public var masterBootRecord: [UInt8]
        public var core: [UInt8]
        /// The first LBA of core.img (1).
        public var coreSector: UInt64
        public var partitionBootSector: [UInt8]
    }

    /// `mbr`: the disk's sector 0; `partitionBoot`: the system partition's first sector;
    /// `partitionOffset`: where that partition starts, in bytes.
    /// `signature`: the disk signature the BCD store names the partitions by, which the MBR
    /// must hold.
    public func writes(mbr: [UInt8], partitionBoot: [UInt8], partitionOffset: UInt64, signature: UInt32?, disk: String) throws(BootError) -> Writes {
        guard mbr.count == Self.sector, mbr[510] == 0x55, mbr[511] == 0xAA else {
            throw BootError.probe(device: disk, reason: "sector 0 holds no MBR (no 55 AA at byte 510)")
        }
        if let signature, mbr.le32(0x1B8) != signature {
            throw BootError.probe(device: disk, reason: String(format: "its MBR disk signature is 0x%08x, not 0x%08x as the BCD store names it: is it the Windows disk?", mbr.le32(0x1B8), signature))
        }
        let entries = (0..<4).map { index -> (type: UInt8, active: Bool, first: UInt64) in
            let entry = 0x1BE + 16 * index
            return (mbr[entry + 4], mbr[entry] == 0x80, UInt64(mbr.le32(entry + 8)))
        }.filter { $0.type != 0 }
        if entries.contains(where: { $0.type == 0xEE }) {
            throw BootError.probe(device: disk, reason: "it has a GPT (protective MBR): BIOS boot code goes on MBR disks; use UEFI boot files")
        }
        let partitionSector = partitionOffset / UInt64(Self.sector)
        guard partitionOffset % UInt64(Self.sector) == 0, entries.contains(where: { $0.first == partitionSector }) else {
            throw BootError.probe(device: disk, reason: "no MBR partition starts at byte \(partitionOffset) (the system partition)")
        }
        let coreSectors = UInt64((coreImage.count + Self.sector - 1) / Self.sector)
        let coreSector: UInt64 = 1
        let firstPartition = entries.map(\.first).min() ?? 0
        guard coreSector + coreSectors <= firstPartition else {
            throw BootError.probe(device: disk, reason: "GRUB's core image needs sectors 1–\(coreSectors) before the first partition, which starts at sector \(firstPartition): "
                                  + "start partitions at 1 MiB")
        }
        guard partitionBoot.count == Self.sector, partitionBoot[510] == 0x55, partitionBoot[511] == 0xAA else {
            throw BootError.probe(device: disk, reason: "the system partition at byte \(partitionOffset) has no boot sector (format it first)")
        }

        var core = coreImage + [UInt8](repeating: 0, count: Int(coreSectors) * Self.sector - coreImage.count)
        // One block-list entry: the rest of core.img, right after its first sector.
        core.put(coreSector + 1, at: Self.blockListOffset)
        core.put(UInt16(coreSectors - 1), at: Self.blockListOffset + 8)
        core.put(Self.coreLoadSegment, at: Self.blockListOffset + 10)
        core.put([UInt8](repeating: 0, count: 12), at: Self.blockListOffset - 12)

        var code = bootImage
        code.put(coreSector, at: Self.kernelSectorOffset)
        code[Self.bootDriveOffset] = 0xFF
        code.put([0x90, 0x90], at: Self.driveCheckOffset)
        var masterBootRecord = mbr
        masterBootRecord.replaceSubrange(0..<Self.partitionTableStart, with: code[0..<Self.partitionTableStart])
        masterBootRecord.replaceSubrange(Self.bpbRange, with: mbr[Self.bpbRange])
        var partitionBootSector = code
        partitionBootSector.replaceSubrange(Self.bpbRange, with: partitionBoot[Self.bpbRange])
        return Writes(masterBootRecord: masterBootRecord, core: core, coreSector: coreSector, partitionBootSector: partitionBootSector)
    }

    /// What `install` would write on `disk`, read from it, nothing written: every check made
    /// before a deployment changes the system partition.
    public func plan(disk: String, partitionOffset: UInt64, signature: UInt32?) throws(BootError) -> Writes {
        try withDisk(disk, writable: false) { read, _ throws(BootError) in
            try writes(mbr: try read(0), partitionBoot: try read(partitionOffset), partitionOffset: partitionOffset, signature: signature, disk: disk)
        }
    }

    /// Installs the boot code on `disk` (the whole disk) whose system partition starts at
    /// `partitionOffset`. core.img first (into sectors nothing uses), then the partition's
    /// boot sector, the MBR last: until that last one-sector write the disk starts as before.
    public func install(disk: String, partitionOffset: UInt64, signature: UInt32?) throws(BootError) -> Writes {
        try withDisk(disk, writable: true) { read, write throws(BootError) in
            let planned = try writes(mbr: try read(0), partitionBoot: try read(partitionOffset), partitionOffset: partitionOffset,
                                     signature: signature, disk: disk)
            try write(planned.core, planned.coreSector * UInt64(Self.sector), "GRUB's core image")
            try write(planned.partitionBootSector, partitionOffset, "the system partition's boot sector")
            try write(planned.masterBootRecord, 0, "the MBR's boot code")
            return planned
        }
    }

    private func withDisk<Result>(_ disk: String, writable: Bool,
                                  _ body: (_ read: (UInt64) throws(BootError) -> [UInt8],
                                           _ write: ([UInt8], UInt64, String) throws(BootError) -> Void) throws(BootError) -> Result) throws(BootError) -> Result {
        let descriptor = open(disk, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
        guard descriptor >= 0 else { throw BootError.io(device: disk, operation: writable ? "open to write the boot code" : "open", errno: errno) }
        defer { close(descriptor) }
        return try body({ offset throws(BootError) in
            var bytes = [UInt8](repeating: 0, count: Self.sector)
            guard pread(descriptor, &bytes, Self.sector, off_t(offset)) == Self.sector else {
                throw BootError.io(device: disk, operation: "read the sector at byte \(offset)", errno: errno)
            }
            return bytes
        }, { bytes, offset, what throws(BootError) in
            guard pwrite(descriptor, bytes, bytes.count, off_t(offset)) == bytes.count else {
                throw BootError.io(device: disk, operation: "write \(what) at byte \(offset)", errno: errno)
            }
            guard fsync(descriptor) == 0 else { throw BootError.io(device: disk, operation: "flush \(what)", errno: errno) }
        })
    }
}
