import DiskModel
import Apply
import Foundation
import Registry

/// What `bcdboot C:\Windows /f UEFI` (or `/f BIOS` and `bootsect /nt60`) does, from Linux:
/// copies the boot manager and its resources from the applied image to the system partition,
/// writes a new BCD store there, and adds the firmware's boot entry (UEFI) or the boot code
/// that starts bootmgr (BIOS).
public enum BootMaker {
    public struct Request: Sendable {
        /// The Windows volume (an NTFS device, or a folder) and the ESP (a FAT device, or a folder).
        public var windowsVolume: String
        public var systemPartition: String
        public var configuration: BootConfiguration
        /// The system partition's disk and partition number: for efibootmgr (UEFI), for the
        /// boot code and GRUB's root partition (BIOS).
        public var espDisk: String?
        public var espNumber: Int?
        public var efivars: String
        /// The recovery partition's volume (NTFS device or folder), used when the
        /// configuration has Windows RE.
        public var recoveryVolume: String?
        /// Whether an image without Winre.wim is an error (WinRE asked for by name) or leaves the
        /// store without WinRE (the default when the layout merely has a recovery partition).
        public var recoveryRequired: Bool
        /// BIOS: where boot.img and the core images are (nil: the boot environment's, or built
        /// with grub-mkimage).
        public var biosBootCode: String?

        public init(windowsVolume: String, systemPartition: String, configuration: BootConfiguration,
                    espDisk: String? = nil, espNumber: Int? = nil, efivars: String = "/sys/firmware/efi/efivars",
                    recoveryVolume: String? = nil, recoveryRequired: Bool = false, biosBootCode: String? = nil) {
            self.biosBootCode = biosBootCode
            self.recoveryVolume = recoveryVolume
            self.recoveryRequired = recoveryRequired
            self.windowsVolume = windowsVolume
            self.systemPartition = systemPartition
            self.configuration = configuration
            self.espDisk = espDisk
            self.espNumber = espNumber
            self.efivars = efivars
        }
    }

    public struct Report: Sendable {
        public var filesCopied: Int
        public var store: BCDStore
        public var firmwareEntry: String
        /// Windows RE as registered, or nil when the store has none.
        public var recovery: RecoveryEnvironment?
    }

    /// Where the image keeps Windows RE and the SDI file its ramdisk needs (Setup takes the
    /// DVD's boot.sdi: the EFI one, or PCAT's, which is the same file).
    static let winreImage = "Windows/System32/Recovery/Winre.wim"
    static let sdiSources = ["Windows/Boot/DVD/EFI/boot.sdi", "Windows/Boot/DVD/PCAT/boot.sdi"]
    static let recoveryFolder = "Recovery/WindowsRE"


    /// Where the image keeps the boot files, and where on the system partition they go
    /// (bcdboot's layout): UEFI onto the ESP under EFI\Microsoft\Boot; BIOS onto the active
    /// partition under \Boot, with bootmgr at its root where the boot sector's loader looks.
    struct Layout {
        var sources: [(from: String, to: String, required: Bool)]
        /// The boot manager in the image, and where it goes besides its folder's copy.
        var manager: String
        var managerCopies: [String]
        /// Staged copies that do not belong on the partition.
        var leftOut: [String] = []
        var store: String

        static let uefi = Layout(sources: [
            ("Windows/Boot/EFI", "EFI/Microsoft/Boot", true),
            ("Windows/Boot/Fonts", "EFI/Microsoft/Boot/Fonts", false),
            ("Windows/Boot/Resources", "EFI/Microsoft/Boot/Resources", false),
        ], manager: "Windows/Boot/EFI/bootmgfw.efi",
        // The removable-media path firmware boots when it has no entry for this disk.
        managerCopies: ["EFI/Boot/bootx64.efi"], store: "EFI/Microsoft/Boot/BCD")

        static let bios = Layout(sources: [
            ("Windows/Boot/PCAT", "Boot", true),
            ("Windows/Boot/Fonts", "Boot/Fonts", false),
            ("Windows/Boot/Resources", "Boot/Resources", false),
        ], manager: "Windows/Boot/PCAT/bootmgr", managerCopies: ["bootmgr"], leftOut: ["Boot/bootmgr"], store: "Boot/BCD")

        static func of(_ firmware: Firmware) -> Layout { firmware == .uefi ? uefi : bios }
    }

    public static func make(_ request: Request, log: (String) -> Void = { _ in }) throws -> Report {
        let firmware = request.configuration.firmware
        let layout = Layout.of(firmware)
        let stage = NSTemporaryDirectory() + "imprint-system-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: stage, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: stage) }

        var configuration = request.configuration
        // BIOS: the disk is checked for the boot code before anything is written.
        let bootCode = firmware == .bios ? try checkedBootCode(request, configuration) : nil
        let volume = try openVolumeFiles(request.windowsVolume)
        var copied = 0
        do {
            guard let manager = try volume.read(layout.manager) else {
                throw BootError.missingBootFiles(volume: request.windowsVolume, path: layout.manager.replacingOccurrences(of: "/", with: "\\"))
            }
            for source in layout.sources {
                let count = try stageTree(volume, source.from, into: stage + "/" + source.to)
                if count == 0 && source.required {
                    throw BootError.missingBootFiles(volume: request.windowsVolume, path: source.from.replacingOccurrences(of: "/", with: "\\"))
                }
                if count > 0 { log("\(count) files from \(source.from.replacingOccurrences(of: "/", with: "\\")) → \(source.to.replacingOccurrences(of: "/", with: "\\"))") }
                copied += count
            }
            for path in layout.leftOut where FileManager.default.fileExists(atPath: stage + "/" + path) {
                try FileManager.default.removeItem(atPath: stage + "/" + path)
                copied -= 1
            }
            for copy in layout.managerCopies {
                let folder = (copy as NSString).deletingLastPathComponent
                try FileManager.default.createDirectory(atPath: stage + "/" + folder, withIntermediateDirectories: true)
                try Data(manager).write(to: URL(fileURLWithPath: stage + "/" + copy))
                copied += 1
            }
            if configuration.recovery != nil {
                if try !installRecovery(request, from: volume, log: log) { configuration.recovery = nil }
            }
            try volume.close()
        } catch {
            try? volume.close()
            throw error
        }

        let store = BCDBuilder.store(configuration)
        let hive = try store.hiveBytes()
        try Data(hive).write(to: URL(fileURLWithPath: stage + "/" + layout.store))
        log("BCD store: \(store.objects.count) objects, \(hive.count) bytes; Windows Boot Loader \(configuration.loaderID.braced)"
            + (configuration.recovery.map { "; Windows RE loader \($0.loaderID.braced)" } ?? ""))

        try openSystemPartition(request.systemPartition).copyTree(stage)
        log("\(copied + 1) files written to the \(firmware == .uefi ? "ESP" : "system partition") \(request.systemPartition)")

        // ReAgent.xml last: it names the WinRE loader, which now exists in the store.
        if let recovery = configuration.recovery {
            guard let reagent = ReAgentXML(recovery) else {
                throw BootError.unsupported("Windows RE: the recovery partition must be a GPT or MBR partition")
            }
            let windows = try openVolumeFiles(request.windowsVolume)
            do {
                try windows.writeWhole(Data(reagent.bytes), to: ReAgentXML.path)
                try windows.close()
            } catch {
                try? windows.close()
                throw error
            }
            log("\(ReAgentXML.path.replacingOccurrences(of: "/", with: "\\")): WinRE at \(RecoveryEnvironment.folder) of the partition at byte \(recovery.partitionOffset)")
        }

        let entry: String
        switch firmware {
        case .uefi:
            // The ESP's fallback path already boots Windows: a firmware entry that cannot be
            // added (no efibootmgr, firmware refusing the write) is reported, not fatal.
            do {
                entry = try FirmwareBootEntry.add(disk: request.espDisk, partition: request.espNumber, efivars: request.efivars)
            } catch {
                entry = "warning: firmware boot entry not added (\(error)); UEFI firmware finds Windows through \\EFI\\Boot\\bootx64.efi"
            }
        case .bios:
            guard let bootCode else { throw BootError.unsupported("BIOS boot code was not prepared") }
            let writes = try bootCode.code.install(disk: bootCode.disk, partitionOffset: bootCode.offset, signature: bootCode.signature)
            entry = "BIOS boot code (GRUB i386-pc, ntldr /bootmgr): MBR and the boot sector of partition \(bootCode.code.partitionNumber) of \(bootCode.disk), "
                + "core image in sectors \(writes.coreSector)–\(writes.coreSector + UInt64(writes.core.count / 512) - 1)"
        }
        log(entry)
        return Report(filesCopied: copied, store: store, firmwareEntry: entry, recovery: configuration.recovery)
    }

    /// BIOS: GRUB's boot code for the MBR and the system partition's boot sector, its core
    /// image for the sectors before the first partition; it starts \bootmgr (see BIOSBootCode).
    private static func checkedBootCode(_ request: Request, _ configuration: BootConfiguration) throws
        -> (code: BIOSBootCode, disk: String, offset: UInt64, signature: UInt32) {
        guard case let .mbrPartition(offset, signature) = configuration.systemPartition else {
            throw BootError.unsupported("BIOS boot: the system partition must be an MBR partition (a GPT disk boots by UEFI)")
        }
        guard let disk = request.espDisk, let number = request.espNumber else {
            throw BootError.unsupported("BIOS boot: the system partition's disk and partition number are not known (give --disk and --esp-number)")
        }
        let code = try BIOSBootCode.load(partition: number, directory: request.biosBootCode)
        _ = try code.plan(disk: disk, partitionOffset: offset, signature: signature)
        return (code, disk, offset, signature)
    }

    /// Copies Winre.wim and boot.sdi from the image to `\Recovery\WindowsRE` of the recovery
    /// volume, each whole or not at all. False when the image has no Winre.wim and WinRE was
    /// not asked for by name: the store is then written without it.
    private static func installRecovery(_ request: Request, from windows: VolumeFiles, log: (String) -> Void) throws -> Bool {
        let windowsName = request.windowsVolume
        guard let recoveryVolume = request.recoveryVolume else {
            throw BootError.unsupported("Windows RE: no recovery partition was given to hold Winre.wim")
        }
        guard try windows.list(winreImage.components(separatedBy: "/").dropLast().joined(separator: "/"))?
            .contains(where: { $0.name.caseInsensitiveCompare("Winre.wim") == .orderedSame && !$0.isDirectory }) == true else {
            if request.recoveryRequired {
                throw BootError.missingBootFiles(volume: windowsName, path: winreImage.replacingOccurrences(of: "/", with: "\\"))
            }
            log("no \(winreImage.replacingOccurrences(of: "/", with: "\\")) in the image: the store gets no Windows RE")
            return false
        }
        let recovery = try openVolumeFiles(recoveryVolume)
        do {
            var sdiFound = false
            for source in sdiSources where try recovery.copyWhole(from: windows, source, to: recoveryFolder + "/boot.sdi") {
                sdiFound = true
                break
            }
            guard sdiFound else {
                throw BootError.missingBootFiles(volume: windowsName, path: sdiSources[0].replacingOccurrences(of: "/", with: "\\"))
            }
            guard try recovery.copyWhole(from: windows, winreImage, to: recoveryFolder + "/Winre.wim") else {
                throw BootError.missingBootFiles(volume: windowsName, path: winreImage.replacingOccurrences(of: "/", with: "\\"))
            }
            try recovery.close()
        } catch {
            try? recovery.close()
            throw error
        }
        log("Winre.wim and boot.sdi → \(RecoveryEnvironment.folder) on \(recoveryVolume)")
        return true
    }

    /// Copies a folder of the volume, recursively, into a local folder; returns the file count.
    private static func stageTree(_ volume: VolumeFiles, _ path: String, into local: String, depth: Int = 0) throws -> Int {
        guard depth < 16, let entries = try volume.list(path) else { return 0 }
        try FileManager.default.createDirectory(atPath: local, withIntermediateDirectories: true)
        var count = 0
        for entry in entries {
            // Names come from the volume: keep them to one plain path component.
            guard !entry.name.contains("/"), !entry.name.contains("\0"), entry.name != ".", entry.name != "..", !entry.name.isEmpty else { continue }
            if entry.isDirectory {
                count += try stageTree(volume, path + "/" + entry.name, into: local + "/" + entry.name, depth: depth + 1)
            } else if let bytes = try volume.read(path + "/" + entry.name) {
                try Data(bytes).write(to: URL(fileURLWithPath: local + "/" + entry.name))
                count += 1
            }
        }
        return count
    }
}
