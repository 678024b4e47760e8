import ArgumentParser
import DiskModel
import Disks
import Foundation

struct DiskCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "disk",
        abstract: "Find, choose, partition and format disks.",
        subcommands: [DiskList.self, DiskSelect.self, DiskPlanCommand.self, DiskPartition.self]
    )
}

/// Where discovery looks; tests point these at prepared trees.
struct EnvironmentOptions: ParsableArguments {
    @Option(help: ArgumentHelp("The sysfs root.", visibility: .hidden)) var sysRoot = "/sys"
    @Option(help: ArgumentHelp("The device-node root.", visibility: .hidden)) var devRoot = "/dev"
    @Option(help: ArgumentHelp("The proc root.", visibility: .hidden)) var procRoot = "/proc"
    @Option(help: "The filesystem label of the Imprint boot medium, which is never written.")
    var mediaLabel = DiskEnvironment.defaultMediaLabel
    @Option(help: ArgumentHelp("How new partitions become devices, in order (kernel,blkpg,loop).", visibility: .hidden))
    var partitionMethods = PartitionMethod.allCases.map(\.rawValue).joined(separator: ",")

    var environment: DiskEnvironment {
        DiskEnvironment(sysRoot: sysRoot, devRoot: devRoot, procRoot: procRoot, mediaLabel: mediaLabel,
                        partitionMethods: partitionMethods.split(separator: ",").compactMap { PartitionMethod(rawValue: String($0)) })
    }

    func scan() throws -> [Disk] {
        do { return try DiskInventory.scan(environment) } catch { throw fail(error) }
    }
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    let data = try encoder.encode(value)
    FileHandle.standardOutput.write(data + Data("\n".utf8))
}

/// `imprint disk list`
struct DiskList: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List every disk: hardware, partitions, filesystems, Windows, and what keeps it busy.")

    @OptionGroup var options: EnvironmentOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let disks = try options.scan()
        if json { return try printJSON(disks) }
        if disks.isEmpty { print("no disks found") }
        for disk in disks { print(DiskText.describe(disk)) }
    }
}

/// `imprint disk select`
struct DiskSelect: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "select", abstract: "Show which disk a rules file chooses, and why every other disk is rejected.")

    @Argument(help: "The selection rules (JSON).") var rules: String
    @OptionGroup var options: EnvironmentOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let selection: DiskSelection
        do {
            let rules = try JSONInput.load(DiskRules.self, path: rules)
            selection = DiskSelector.evaluate(rules, disks: try DiskInventory.scan(options.environment))
        } catch { throw fail(error) }
        if json { try printJSON(selection) } else { print(selection.report()) }
        if selection.chosen == nil { throw ExitCode(3) }
    }
}

/// Loads a layout and the rules that choose its disk, and plans, touching nothing.
struct PlanInputs: ParsableArguments {
    @Argument(help: "The partition layout (JSON).") var layout: String
    @Option(name: .customLong("disk"), help: "The rules that choose the disk (JSON).") var rules: String

    func plan(_ environment: DiskEnvironment) throws -> DiskPlan {
        do {
            let layout = try JSONInput.load(PartitionLayout.self, path: layout)
            let rules = try JSONInput.load(DiskRules.self, path: rules)
            return try DiskPlan.make(layout: layout, rules: rules, environment: environment)
        } catch { throw fail(error) }
    }
}

/// `imprint disk plan`
struct DiskPlanCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan", abstract: "Show exactly what preparing a disk would wipe and create; touches nothing.")

    @OptionGroup var inputs: PlanInputs
    @OptionGroup var options: EnvironmentOptions
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let plan = try inputs.plan(options.environment)
        if json { try printJSON(plan) } else { print(plan.description) }
    }
}

/// `imprint disk partition`
struct DiskPartition: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partition",
        abstract: "Wipe the chosen disk, write the layout's partition table and format its partitions.",
        discussion: "Without --yes, prints the plan and stops. The disk is checked again just before the first write.")

    @OptionGroup var inputs: PlanInputs
    @OptionGroup var options: EnvironmentOptions
    @Flag(help: "Really write the disk.") var yes = false
    @Flag(help: "Print the result as JSON.") var json = false

    func run() throws {
        let plan = try inputs.plan(options.environment)
        guard yes else {
            print(plan.description)
            print("nothing written: add --yes to carry this out")
            throw ExitCode(2)
        }
        FileHandle.standardError.write(Data((plan.description + "\n").utf8))
        let prepared: PreparedDisk
        do {
            prepared = try DiskPreparer.prepare(plan, environment: options.environment) { line in
                FileHandle.standardError.write(Data((line + "\n").utf8))
            }
        } catch { throw fail(error) }
        defer { prepared.partitions.release() }
        if json {
            struct Output: Encodable { var disk: String; var method: String; var partitions: [PartitionDevice]; var filesystems: [String: Filesystem] }
            try printJSON(Output(disk: prepared.disk.path, method: prepared.partitions.method.rawValue,
                                 partitions: prepared.partitions.devices,
                                 filesystems: Dictionary(uniqueKeysWithValues: prepared.filesystems.map { (String($0.key), $0.value) })))
        } else {
            for device in prepared.partitions.devices {
                let fs = prepared.filesystems[device.number].map { "  " + DiskText.filesystem($0) } ?? ""
                print("partition \(device.number): \(ByteSize.format(device.size)) at \(ByteSize.format(device.offset))\(fs)")
            }
            print("\(prepared.disk.path) is ready")
        }
    }
}

/// How disks read on a technician's terminal.
enum DiskText {
    static func summary(_ disk: Disk) -> String {
        var parts = [disk.path, ByteSize.format(disk.size), disk.transport.rawValue]
        if let vendor = disk.vendor { parts.append(vendor) }
        if let model = disk.model { parts.append(model) }
        if let serial = disk.serial { parts.append("serial \(serial)") }
        return parts.joined(separator: "  ")
    }

    static func describe(_ disk: Disk) -> String {
        var lines = [summary(disk)]
        var facts = ["sectors \(disk.logicalSectorSize)/\(disk.physicalSectorSize)", disk.rotational ? "rotational" : "non-rotational"]
        if let wwn = disk.wwn { facts.append("wwn \(wwn)") }
        if disk.removable { facts.append("removable") }
        if disk.readOnly { facts.append("read-only") }
        if let backing = disk.backingFile { facts.append("backed by \(backing)") }
        lines.append("  " + facts.joined(separator: ", "))
        if let table = disk.partitionTable {
            lines.append("  \(table.type.rawValue) partition table" + (table.id.map { " \($0)" } ?? "")
                         + (table.partitions.isEmpty ? ", no partitions" : ""))
            for p in table.partitions {
                var text = "    \(p.number)  start \(ByteSize.format(p.offset))  size \(ByteSize.format(p.size))  \(p.typeName ?? p.type)"
                if let name = p.name { text += "  \"\(name)\"" }
                if p.attributes != 0 { text += "  attributes 0x" + String(p.attributes, radix: 16) }
                if let fs = p.filesystem { text += "  " + filesystem(fs) }
                if let device = p.devicePath { text += "  (\(device))" }
                lines.append(text)
            }
        } else if let fs = disk.filesystem {
            lines.append("  whole-disk " + filesystem(fs))
        } else if disk.unreadable == nil {
            lines.append("  blank (no partition table, no filesystem)")
        }
        for w in disk.windows {
            lines.append("  Windows on " + (w.partition.map { "partition \($0)" } ?? "the whole disk")
                         + (w.label.map { " (label \($0))" } ?? "") + (w.hasUsers ? ", with Users" : "")
                         + (w.refreshInProgress.map { ", a refresh under way (the old system in \($0))" } ?? ""))
            if let details = w.details { lines.append("    " + details.summary) }
            for problem in w.problems { lines.append("    not read: " + problem) }
        }
        for fs in disk.filesystems where fs.isBitLocker {
            lines.append("  BitLocker-encrypted volume" + (fs.uuid.map { " \($0)" } ?? "") + ": suspend or decrypt it before a refresh")
        }
        if let reason = disk.unreadable { lines.append("  unreadable: \(reason)") }
        if let reason = disk.bootMedium { lines.append("  boot medium: \(reason)") }
        for use in disk.usage { lines.append("  in use: \(use.description)") }
        return lines.joined(separator: "\n")
    }

    static func filesystem(_ fs: Filesystem) -> String {
        var text = fs.type
        if let label = fs.label { text += " \"\(label)\"" }
        if let uuid = fs.uuid { text += " \(uuid)" }
        return text
    }
}
