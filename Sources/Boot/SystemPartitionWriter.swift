import DiskModel
import Disks
import Apply
import Foundation

/// Puts files onto the system partition. A FAT ESP is written with mtools (`mmd`, `mcopy -i
/// DEVICE`), which need no kernel vfat driver and exist in the boot environment; an NTFS
/// system partition (BIOS's System Reserved) through libntfs-3g; a folder (a mounted ESP, a
/// test's tree) directly.
public protocol SystemPartitionWriter {
    /// Copies the tree under local folder `source` onto the partition's root, merging with
    /// folders already there and replacing files.
    func copyTree(_ source: String) throws
    /// What the partition holds at `path` (`EFI/Microsoft/Boot`), for the log and tests.
    func list(_ path: String) throws -> [String]
}

public func openSystemPartition(_ target: String) -> SystemPartitionWriter {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: target, isDirectory: &isDirectory), isDirectory.boolValue {
        return DirectorySystemPartition(root: target)
    }
    return NTFSTarget.hasNTFSBootSector(target) ? NTFSSystemPartition(device: target) : FATSystemPartition(device: target)
}

/// Each file is written whole or not at all (beside its name, then renamed): a cut during the
/// copy leaves the previous boot files and store in place.
public struct NTFSSystemPartition: SystemPartitionWriter {
    public let device: String

    public func copyTree(_ source: String) throws {
        let volume = try NTFSVolumeFiles(device: device)
        do {
            try copy(source, to: "", volume)
            try volume.sync()
            try volume.close()
        } catch {
            try? volume.close()
            throw error
        }
    }

    private func copy(_ local: String, to remote: String, _ volume: VolumeFiles) throws {
        for name in try FileManager.default.contentsOfDirectory(atPath: local).sorted() {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: local + "/" + name, isDirectory: &isDirectory)
            let target = remote.isEmpty ? name : remote + "/" + name
            if isDirectory.boolValue {
                try copy(local + "/" + name, to: target, volume)
            } else {
                try volume.writeWhole(try Data(contentsOf: URL(fileURLWithPath: local + "/" + name)), to: target)
            }
        }
    }

    public func list(_ path: String) throws -> [String] {
        let volume = try NTFSVolumeFiles(device: device, readOnly: true)
        defer { try? volume.close() }
        return try (volume.list(path) ?? []).map(\.name).sorted()
    }
}

public struct FATSystemPartition: SystemPartitionWriter {
    public let device: String
    public var log: @Sendable (String) -> Void = { _ in }

    public init(device: String) { self.device = device }

    private func run(_ arguments: [String]) throws -> String { try BootTool.run(arguments) }

    public func copyTree(_ source: String) throws {
        try copy(source, to: "")
    }

    /// Folder by folder: mmd for missing folders (mcopy -s would refuse an existing one),
    /// then mcopy -o for the files, replacing older copies.
    private func copy(_ local: String, to remote: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: local).sorted()
        var existing = Set<String>()
        if let listing = try? run(["mdir", "-b", "-i", device, "::/" + remote]) {
            for line in listing.split(separator: "\n") {
                existing.insert((line.split(separator: "/").last.map(String.init) ?? "").uppercased())
            }
        }
        var files: [String] = []
        for name in names {
            var isDirectory: ObjCBool = false
            _ = FileManager.default.fileExists(atPath: local + "/" + name, isDirectory: &isDirectory)
            let target = remote.isEmpty ? name : remote + "/" + name
            if isDirectory.boolValue {
                if !existing.contains(name.uppercased()) { _ = try run(["mmd", "-i", device, "::/" + target]) }
                try copy(local + "/" + name, to: target)
            } else {
                files.append(local + "/" + name)
            }
        }
        if !files.isEmpty { _ = try run(["mcopy", "-o", "-Q", "-i", device] + files + ["::/" + remote]) }
    }

    public func list(_ path: String) throws -> [String] {
        try run(["mdir", "-b", "-i", device, "::/" + path]).split(separator: "\n").compactMap { line in
            line.split(separator: "/").last.map(String.init)
        }.filter { $0 != "." && $0 != ".." }
    }
}

public struct DirectorySystemPartition: SystemPartitionWriter {
    public let root: String

    public func copyTree(_ source: String) throws {
        let manager = FileManager.default
        guard let walker = manager.enumerator(atPath: source) else { return }
        while let relative = walker.nextObject() as? String {
            var isDirectory: ObjCBool = false
            _ = manager.fileExists(atPath: source + "/" + relative, isDirectory: &isDirectory)
            let target = root + "/" + relative
            if isDirectory.boolValue {
                try manager.createDirectory(atPath: target, withIntermediateDirectories: true)
            } else {
                try? manager.removeItem(atPath: target)
                try manager.copyItem(atPath: source + "/" + relative, toPath: target)
            }
        }
    }

    public func list(_ path: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root + "/" + path).sorted()
    }
}
