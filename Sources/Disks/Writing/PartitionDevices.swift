import DiskModel
import CImprintSystem
import Foundation
import Synchronization

/// A partition the agent can format and write: a kernel partition device (`/dev/sda2`,
/// `/dev/loop0p2`) or, where the kernel cannot show one, a loop device over its byte range.
public struct PartitionDevice: Sendable, Codable, Equatable {
    public var number: Int
    public var path: String
    /// Byte offset and size on the disk.
    public var offset: UInt64
    public var size: UInt64
    /// True for a loop device the agent attached (detached by `release`).
    public var isLoop: Bool
}

/// The partitions of a freshly written table, visible as devices. How they became visible is
/// kept for the log: the kernel's own parser, BLKPG (partx), or offset loop devices.
public final class ExposedPartitions: Sendable {
    public let devices: [PartitionDevice]
    public let method: PartitionMethod
    private let released = Atomic<Bool>(false)

    public init(devices: [PartitionDevice], method: PartitionMethod) {
        self.devices = devices
        self.method = method
    }

    public func device(_ number: Int) -> PartitionDevice? { devices.first { $0.number == number } }

    /// Detaches the loop devices (kernel partitions stay: they are the disk's own).
    public func release() {
        guard !released.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for device in devices where device.isLoop { _ = imprint_loop_detach(device.path) }
    }

    deinit { release() }
}

extension PartitionDevice {
    /// Checks, just before a partition is formatted, that its device still is that partition of
    /// that disk: same size, and for a kernel partition the same disk and start, for a loop
    /// device the same backing disk and offset.
    func verify(on disk: Disk, environment: DiskEnvironment) throws(DiskError) {
        let name = (path as NSString).lastPathComponent
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw DiskError.io(path: path, operation: "open partition \(number)", errno: errno) }
        var bytes: UInt64 = 0
        let sized = imprint_block_size64(descriptor, &bytes) == 0
        close(descriptor)
        var problems: [String] = []
        if !sized || bytes != size { problems.append("it holds \(bytes) bytes, not \(size)") }
        if isLoop {
            let loop = environment.blockDirectory(name) + "/loop/"
            if environment.attribute(loop + "backing_file") != disk.path { problems.append("its loop device no longer reads \(disk.path)") }
            if environment.attribute(loop + "offset").flatMap({ UInt64($0) }) != offset { problems.append("its loop offset moved") }
        } else {
            let kernel = DiskInventory.partitionDevices(disk.name, environment).first { $0.name == name }
            if kernel?.offset != offset || kernel?.number != number { problems.append("the kernel no longer shows it at \(offset) on \(disk.path)") }
        }
        guard problems.isEmpty else {
            throw DiskError.diskChanged(path: path, reason: "partition \(number): " + problems.joined(separator: "; "))
        }
    }
}

enum PartitionExposer {
    static func expose(_ disk: WritableDisk, plan: PartitionPlan, environment: DiskEnvironment,
                       log: (String) -> Void) throws(DiskError) -> ExposedPartitions {
        let wanted = plan.partitions.map { (number: $0.number, offset: $0.offset, size: $0.size) }
        let methods = environment.partitionMethods
        // 1. The kernel's own parser, as on any machine booted from Debian's kernel.
        if methods.contains(.kernel) {
            if imprint_block_reread_partitions(disk.descriptor) != 0 {
                log("\(disk.path): the kernel did not re-read the table (\(String(cString: strerror(errno))))")
            } else if let devices = waitForKernelPartitions(disk, wanted, environment, seconds: 3) {
                log("\(disk.path): the kernel re-read the partition table")
                return ExposedPartitions(devices: devices, method: .kernel)
            }
        }
        // 2. BLKPG, as partx does: the kernel accepts partitions it cannot parse itself.
        if methods.contains(.blkpg), addWithBLKPG(disk, wanted, environment, log: log),
           let devices = waitForKernelPartitions(disk, wanted, environment, seconds: 5) {
            log("\(disk.path): partitions added with BLKPG")
            return ExposedPartitions(devices: devices, method: .blkpg)
        }
        // 3. Loop devices over each partition's bytes: works on any kernel with loop support.
        guard methods.contains(.loop) else {
            throw DiskError.partitionsNotVisible(path: disk.path, reason: "the kernel shows no partitions after "
                + methods.map(\.rawValue).joined(separator: " and "))
        }
        var devices: [PartitionDevice] = []
        for partition in wanted {
            var buffer = [CChar](repeating: 0, count: 64)
            let number = imprint_loop_attach(disk.descriptor, partition.offset, partition.size, 0, &buffer, buffer.count)
            guard number >= 0 else {
                let code = errno
                ExposedPartitions(devices: devices, method: .loop).release()
                throw DiskError.partitionsNotVisible(
                    path: disk.path, reason: "no loop device for partition \(partition.number): \(String(cString: strerror(code)))")
            }
            let path = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            devices.append(PartitionDevice(number: partition.number, path: path, offset: partition.offset,
                                           size: partition.size, isLoop: true))
        }
        log("\(disk.path): partitions exposed as loop devices: "
            + devices.map { "\($0.number)=\($0.path)" }.joined(separator: " "))
        return ExposedPartitions(devices: devices, method: .loop)
    }

    /// The kernel's partitions once they match the plan exactly and their nodes answer.
    private static func waitForKernelPartitions(_ disk: WritableDisk, _ wanted: [(number: Int, offset: UInt64, size: UInt64)],
                                                _ environment: DiskEnvironment, seconds: Double) -> [PartitionDevice]? {
        let deadline = Date().addingTimeInterval(seconds)
        repeat {
            let kernel = DiskInventory.partitionDevices(disk.disk.name, environment)
            let matches = kernel.count == wanted.count && wanted.allSatisfy { want in
                kernel.contains { $0.number == want.number && $0.offset == want.offset && $0.size == want.size }
            }
            if matches {
                let devices = wanted.compactMap { want -> PartitionDevice? in
                    guard let found = kernel.first(where: { $0.number == want.number }) else { return nil }
                    let path = environment.devicePath(found.name)
                    guard nodeAnswers(path, size: want.size) else { return nil }
                    return PartitionDevice(number: want.number, path: path, offset: want.offset, size: want.size, isLoop: false)
                }
                if devices.count == wanted.count { return devices }
            }
            usleep(50_000)
        } while Date() < deadline
        return nil
    }

    private static func nodeAnswers(_ path: String, size: UInt64) -> Bool {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var bytes: UInt64 = 0
        return imprint_block_size64(descriptor, &bytes) == 0 && bytes == size
    }

    private static func addWithBLKPG(_ disk: WritableDisk, _ wanted: [(number: Int, offset: UInt64, size: UInt64)],
                                     _ environment: DiskEnvironment, log: (String) -> Void) -> Bool {
        for stale in DiskInventory.partitionDevices(disk.disk.name, environment) {
            if imprint_blkpg_delete(disk.descriptor, Int32(stale.number)) != 0 {
                log("\(disk.path): BLKPG cannot remove old partition \(stale.number): \(String(cString: strerror(errno)))")
                return false
            }
        }
        for partition in wanted {
            if imprint_blkpg_add(disk.descriptor, Int32(partition.number), Int64(partition.offset), Int64(partition.size)) != 0 {
                log("\(disk.path): BLKPG cannot add partition \(partition.number): \(String(cString: strerror(errno)))")
                for added in wanted where added.number < partition.number { _ = imprint_blkpg_delete(disk.descriptor, Int32(added.number)) }
                return false
            }
        }
        return true
    }
}

/// A device for a partition of an existing table (a refresh's Windows volume): the kernel's own
/// partition device when it shows one, else a loop device over the partition's bytes, opened
/// without touching the table or taking the disk exclusively.
public enum PartitionAccess {
    public static func device(for partition: Partition, of disk: Disk) throws(DiskError) -> ExposedPartitions {
        if let path = partition.devicePath {
            return ExposedPartitions(devices: [PartitionDevice(number: partition.number, path: path, offset: partition.offset,
                                                               size: partition.size, isLoop: false)], method: .kernel)
        }
        let descriptor = open(disk.path, O_RDWR | O_CLOEXEC)
        guard descriptor >= 0 else { throw DiskError.io(path: disk.path, operation: "open", errno: errno) }
        defer { close(descriptor) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard imprint_loop_attach(descriptor, partition.offset, partition.size, 0, &buffer, buffer.count) >= 0 else {
            throw DiskError.partitionsNotVisible(path: disk.path, reason: "no loop device for partition \(partition.number): \(String(cString: strerror(errno)))")
        }
        let path = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return ExposedPartitions(devices: [PartitionDevice(number: partition.number, path: path, offset: partition.offset,
                                                           size: partition.size, isLoop: true)], method: .loop)
    }
}
