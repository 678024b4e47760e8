import InstalledWindows

/// A whole disk as discovery found it: what sysfs says about the hardware, what libblkid
/// finds on it, and what the safety rules need to know (boot medium, in use).
public struct Disk: Sendable, Codable, Equatable {
    /// Kernel name: `sda`, `nvme0n1`, `loop3`.
    public var name: String
    /// Device node: `/dev/sda`.
    public var path: String
    /// Size in bytes.
    public var size: UInt64
    public var logicalSectorSize: Int
    public var physicalSectorSize: Int
    public var model: String?
    public var vendor: String?
    public var serial: String?
    public var wwn: String?
    public var transport: Transport
    public var rotational: Bool
    public var removable: Bool
    public var readOnly: Bool
    /// `major:minor`, to recognise the disk in /proc/self/mountinfo and after a re-scan.
    public var deviceNumber: String
    /// For loop devices: the file behind them.
    public var backingFile: String?
    public var partitionTable: PartitionTable?
    /// A filesystem on the whole disk (no partition table), as on some USB sticks.
    public var filesystem: Filesystem?
    /// Windows installations found on the disk's NTFS volumes.
    public var windows: [WindowsInstallation]
    /// Why this disk is the medium the agent booted from, or nil when it is not.
    public var bootMedium: String?
    /// What keeps the disk busy: mounts, swap, holders (LVM, RAID, dm), loop devices on top.
    public var usage: [DiskUsage]
    /// Why the disk's contents could not be read (no permission, I/O error), or nil.
    public var unreadable: String?

    public init(name: String, path: String, size: UInt64, logicalSectorSize: Int = 512,
                physicalSectorSize: Int = 512, model: String? = nil, vendor: String? = nil,
                serial: String? = nil, wwn: String? = nil, transport: Transport = .unknown,
                rotational: Bool = false, removable: Bool = false, readOnly: Bool = false,
                deviceNumber: String = "0:0", backingFile: String? = nil,
                partitionTable: PartitionTable? = nil, filesystem: Filesystem? = nil,
                windows: [WindowsInstallation] = [], bootMedium: String? = nil, usage: [DiskUsage] = [],
                unreadable: String? = nil) {
        self.name = name
        self.path = path
        self.size = size
        self.logicalSectorSize = logicalSectorSize
        self.physicalSectorSize = physicalSectorSize
        self.model = model
        self.vendor = vendor
        self.serial = serial
        self.wwn = wwn
        self.transport = transport
        self.rotational = rotational
        self.removable = removable
        self.readOnly = readOnly
        self.deviceNumber = deviceNumber
        self.backingFile = backingFile
        self.partitionTable = partitionTable
        self.filesystem = filesystem
        self.windows = windows
        self.bootMedium = bootMedium
        self.usage = usage
        self.unreadable = unreadable
    }

    /// True when the disk holds anything a wipe would destroy: partitions or a filesystem.
    public var holdsData: Bool {
        filesystem != nil || !(partitionTable?.partitions.isEmpty ?? true)
    }

    /// Every filesystem on the disk, whole-disk or in partitions.
    public var filesystems: [Filesystem] {
        (filesystem.map { [$0] } ?? []) + (partitionTable?.partitions.compactMap(\.filesystem) ?? [])
    }
}

/// How the disk is attached, as Ironic and lsblk name it.
public enum Transport: String, Sendable, Codable, CaseIterable {
    case nvme, sata, sas, scsi, usb, virtio, mmc, loop, ata, optical, unknown
}

public enum PartitionTableType: String, Sendable, Codable {
    case gpt
    /// An MS-DOS (MBR) table; libblkid calls it "dos".
    case mbr
}

public struct PartitionTable: Sendable, Codable, Equatable {
    public var type: PartitionTableType
    /// The GPT disk GUID, or the MBR disk identifier as `0x1234abcd`.
    public var id: String?
    public var partitions: [Partition]

    public init(type: PartitionTableType, id: String?, partitions: [Partition]) {
        self.type = type
        self.id = id
        self.partitions = partitions
    }
}

public struct Partition: Sendable, Codable, Equatable {
    public var number: Int
    /// Offset from the start of the disk, in bytes.
    public var offset: UInt64
    /// Size in bytes.
    public var size: UInt64
    /// GPT type GUID (upper case) or MBR type as `0x07`.
    public var type: String
    /// A readable name for the type (`EFI system`, `Microsoft basic data`, `NTFS/exFAT`).
    public var typeName: String?
    /// The GPT partition name.
    public var name: String?
    /// GPT attribute bits, or the MBR boot flag (0x80).
    public var attributes: UInt64
    /// The GPT unique partition GUID, or `MBRID-NN` as the kernel spells PARTUUID for MBR.
    public var uuid: String?
    /// The kernel's device for the partition when it has one (`/dev/sda2`).
    public var devicePath: String?
    public var filesystem: Filesystem?

    public init(number: Int, offset: UInt64, size: UInt64, type: String, typeName: String? = nil,
                name: String? = nil, attributes: UInt64 = 0, uuid: String? = nil,
                devicePath: String? = nil, filesystem: Filesystem? = nil) {
        self.number = number
        self.offset = offset
        self.size = size
        self.type = type
        self.typeName = typeName
        self.name = name
        self.attributes = attributes
        self.uuid = uuid
        self.devicePath = devicePath
        self.filesystem = filesystem
    }
}

public struct Filesystem: Sendable, Codable, Equatable {
    /// libblkid's name: `ntfs`, `vfat`, `ext4`, `BitLocker`, `swap`, `linux_raid_member`, ...
    public var type: String
    public var label: String?
    public var uuid: String?
    /// What libblkid says the content is for: `filesystem`, `raid`, `crypto`, `other`.
    public var usage: String?

    public init(type: String, label: String? = nil, uuid: String? = nil, usage: String? = nil) {
        self.type = type
        self.label = label
        self.uuid = uuid
        self.usage = usage
    }

    public var isBitLocker: Bool { type.lowercased() == "bitlocker" }
}

/// An NTFS volume that holds `Windows\System32\config\SYSTEM`.
public struct WindowsInstallation: Sendable, Codable, Equatable {
    /// The partition number, or nil for an NTFS filesystem on the whole disk.
    public var partition: Int?
    /// The volume label.
    public var label: String?
    /// The Windows folder as it is spelled on the volume (`Windows`).
    public var systemRoot: String
    /// True when the volume also has a `Users` folder: a refresh would keep it.
    public var hasUsers: Bool
    /// A refresh begun by Imprint and cut off after its clean-up: the folder holding the old
    /// system (`Windows.old`), its record (`RefreshRecord`) on the volume. The refresh goes on
    /// on this volume; nil for an installation nobody is refreshing.
    public var refreshInProgress: String?
    /// What its hives and kernel32.dll say it is (edition, version, build, computer name...);
    /// nil when none of them could be read. For a refresh under way, the old system's.
    public var details: WindowsDetails?
    /// Why some of the details are missing: a hive absent, unreadable or damaged, each naming
    /// the volume and the file.
    public var problems: [String]

    public init(partition: Int?, label: String?, systemRoot: String, hasUsers: Bool, refreshInProgress: String? = nil,
                details: WindowsDetails? = nil, problems: [String] = []) {
        self.partition = partition
        self.label = label
        self.systemRoot = systemRoot
        self.hasUsers = hasUsers
        self.refreshInProgress = refreshInProgress
        self.details = details
        self.problems = problems
    }

    enum CodingKeys: String, CodingKey { case partition, label, systemRoot, hasUsers, refreshInProgress, details, problems }

    // A listing saved before the details existed (`sequence plan --disks`) still reads.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        partition = try c.decodeIfPresent(Int.self, forKey: .partition)
        label = try c.decodeIfPresent(String.self, forKey: .label)
        systemRoot = try c.decode(String.self, forKey: .systemRoot)
        hasUsers = try c.decode(Bool.self, forKey: .hasUsers)
        refreshInProgress = try c.decodeIfPresent(String.self, forKey: .refreshInProgress)
        details = try c.decodeIfPresent(WindowsDetails.self, forKey: .details)
        problems = try c.decodeIfPresent([String].self, forKey: .problems) ?? []
    }
}

extension Disk {
    /// The installation a refresh takes on this disk: the first one with users' files, else
    /// the first one (`findWindows` and `sequence plan` choose alike).
    public var windowsToRefresh: WindowsInstallation? { windows.first(where: \.hasUsers) ?? windows.first }
}

/// Something that keeps a disk busy, so it must not be written.
public struct DiskUsage: Sendable, Codable, Equatable {
    public enum Kind: String, Sendable, Codable {
        /// A filesystem on the disk or one of its partitions is mounted.
        case mounted
        /// The disk or a partition is active swap.
        case swap
        /// A device-mapper, MD RAID, bcache or LVM device sits on top of it.
        case holder
        /// A loop device reads the disk (or a partition of it) as its backing file.
        case loop
    }

    public var kind: Kind
    /// The device that is in use (the disk or one of its partitions).
    public var device: String
    /// The mount point, the holder's name, or the loop device.
    public var detail: String

    public init(kind: Kind, device: String, detail: String) {
        self.kind = kind
        self.device = device
        self.detail = detail
    }

    public var description: String {
        switch kind {
        case .mounted: return "\(device) is mounted on \(detail)"
        case .swap: return "\(device) is active swap"
        case .holder: return "\(device) is held by \(detail) (LVM, RAID or device-mapper)"
        case .loop: return "\(device) is the backing file of \(detail)"
        }
    }
}
