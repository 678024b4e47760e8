import Apply
import Boot
import DiskModel
import Drivers
import Failures
import Foundation
import InstalledWindows
import SequenceModel
import Transport

/// injectDrivers: what MDT's "Inject Drivers" does. The machine's PCI and USB IDs are matched
/// against every INF of the source as Windows ranks drivers; each matching package is copied
/// whole into `Drivers\<package>\` on the volume and listed in the unattend's DriverPaths.
enum DriverSteps {
    /// An HTTP index of driver bundles, so only the bundles a machine needs are downloaded:
    /// `{"packages": [{"name": "Intel-NIC", "url": "intel-nic.tar.xz", "sha256": "...",
    ///   "hardwareIDs": ["PCI\\VEN_8086&DEV_15B8"]}]}`; relative URLs are relative to the index.
    struct Index: Decodable {
        struct Entry: Decodable {
            var name: String
            var url: String
            var sha256: String?
            var hardwareIDs: [String]
        }
        var packages: [Entry]
    }

    static func injectDrivers(_ parameters: InjectDriversStep, _ step: Step, _ context: RunContext) throws {
        let source = context.substitute(parameters.source)
        let volume = try context.volume(parameters.target)
        let scratch = NSTemporaryDirectory() + "imprint-drivers-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let devices = DeviceIDs.scan(sysfsRoot: context.options.environment.sysRoot)
        context.bus.log("\(devices.count) PCI and USB devices on this machine", step: step)

        var packages: [DriverPackage] = []
        if ImageSteps.isURL(source) {
            if source.lowercased().hasSuffix(".json") {
                packages = try fromIndex(source, devices: devices, scratch: scratch, step, context)
            } else {
                packages = try bundle(source, sha256: nil, scratch: scratch, step, context)
            }
        } else {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory) else {
                throw StepFailure("\(source): no such driver folder or bundle", kind: .badInput)
            }
            packages = isDirectory.boolValue ? try DriverSource.local(source) : try DriverSource.bundle(source, scratch: scratch, limits: context.options.extraction)
        }
        guard let architecture = Architecture(rawValue: parameters.architecture) else {
            throw StepFailure("unknown architecture \(parameters.architecture)", kind: .badInput)
        }
        let target = TargetOS(architecture: architecture)
        let result = DriverMatcher.match(devices: devices, packages: packages, target: target)
        for problem in result.problems { context.bus.log("\(problem)", step: step, level: "warning") }
        for match in result.matches {
            context.bus.log("\(match.device.description) [\(match.matchedDeviceID)] → \(match.package.name) "
                            + "(\((match.infPath as NSString).lastPathComponent): \(match.modelDescription), "
                            + String(format: "rank 0x%04X", match.rank) + ")", step: step)
        }
        let plans = try DriverInstallPlan.make(for: result.matches, target: target)
        let files = try openVolumeFiles(volume.device)
        var copied = 0
        for plan in plans {
            for warning in plan.warnings { context.bus.log(warning, step: step, level: "warning") }
            for file in plan.files {
                try files.copy(file: file.source, to: file.destination)
                copied += 1
            }
        }
        try files.close()
        if !plans.isEmpty {
            // Plug and Play searches DevicePath (and its subfolders) for every new device, so
            // drivers also install for hardware found after setup, not only through the unattend.
            do {
                let change = try DriverSearchPath.add("%SystemDrive%\\Drivers", volume: volume.device)
                context.bus.log("DevicePath: \(change.old ?? "(not set)") → \(change.new)", step: step)
            } catch {
                context.bus.log("DevicePath not updated: \(error)", step: step, level: "warning")
            }
        }
        let paths = plans.map { "C:\\Drivers\\" + $0.package.name }
        context.driverPaths[parameters.target, default: []] += paths
        context.bus.log("\(plans.count) of \(packages.count) packages matched (\(copied) files copied); "
                        + "\(result.unmatchedDevices.count) devices have no driver in the source", step: step)
        if let written = context.unattendWritten[parameters.target], !paths.isEmpty {
            try UnattendWriter.write(written, volume: parameters.target, context)
        }
    }

    private static func bundle(_ url: String, sha256: String?, scratch: String, _ step: Step, _ context: RunContext) throws -> [DriverPackage] {
        let file = scratch + "/" + UUID().uuidString + ".tar.xz"
        let result = try context.client.download(url, to: file, expectedSHA256: sha256) { progress in
            StepRunner.progress(context, step, "downloading drivers", bytes: progress.bytes, total: progress.total)
        }
        if !result.sourcesSummary.isEmpty {
            context.bus.log("driver bundle \(url): \(result.sourcesSummary)", step: step)
        }
        let packages = try DriverSource.bundle(file, scratch: scratch + "/" + UUID().uuidString, limits: context.options.extraction)
        try? FileManager.default.removeItem(atPath: file)
        return packages
    }

    private static func fromIndex(_ url: String, devices: [Device], scratch: String, _ step: Step, _ context: RunContext) throws -> [DriverPackage] {
        let data = try context.client.fetch(url, limit: 8 << 20)
        let index: Index
        do { index = try JSONDecoder().decode(Index.self, from: data) } catch {
            throw StepFailure("\(url): not a driver index (\(error))", kind: .badInput)
        }
        let ids = Set(devices.flatMap { $0.hardwareIDs + $0.compatibleIDs }.map { $0.uppercased() })
        var packages: [DriverPackage] = []
        for entry in index.packages where entry.hardwareIDs.contains(where: { ids.contains($0.uppercased()) }) {
            let location = URL(string: entry.url, relativeTo: URL(string: url))?.absoluteString ?? entry.url
            context.bus.log("driver bundle \(entry.name) matches this machine: downloading \(location)", step: step)
            packages += try bundle(location, sha256: entry.sha256, scratch: scratch, step, context)
        }
        return packages
    }
}
