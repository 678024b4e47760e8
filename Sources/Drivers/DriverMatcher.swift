import Foundation

public struct DriverMatch: Sendable {
    public var device: Device
    public var package: DriverPackage
    public var infPath: String
    public var modelDescription: String
    public var installSection: String
    public var matchedDeviceID: String
    public var matchedINFID: String
    /// 0x0000THHH as Windows computes the identifier score; every candidate is treated as signed
    /// (signature score 0) because signatures cannot be checked here.
    public var rank: UInt32
    public var driverDate: DriverDate?
    public var driverVersion: DriverVersion?
}

public struct MatchResult: Sendable {
    /// The best driver for each device that has one, in device order.
    public var matches: [DriverMatch]
    public var unmatchedDevices: [Device]
    /// Packages no device chose: not worth copying into the image.
    public var unusedPackages: [DriverPackage]
    /// INFs that could not be evaluated; the rest of the matching went on without them.
    public var problems: [INFError]
}

public enum DriverMatcher {
    /// The identifier score of "Identifier Score (Windows Vista and later)", or nil when no ID
    /// of the device appears in the model line. Comparison ignores case, as PnP does.
    public static func rank(device: Device, hardwareID: String?, compatibleIDs: [String]) -> (rank: UInt32, deviceID: String, infID: String)? {
        var best: (rank: UInt32, deviceID: String, infID: String)? = nil
        func consider(_ rank: Int, _ deviceID: String, _ infID: String) {
            let value = UInt32(min(rank, 0xFFFF))
            if best == nil || value < best?.rank ?? .max { best = (value, deviceID, infID) }
        }
        let infCompatible = compatibleIDs.map { $0.uppercased() }
        let infHardware = hardwareID?.uppercased()
        for (i, id) in device.hardwareIDs.enumerated() {
            let upper = id.uppercased()
            if upper == infHardware, let hardwareID { consider(0x0000 + min(i, 0xFFF), id, hardwareID) }
            if let j = infCompatible.firstIndex(of: upper) { consider(0x1000 + min(i, 0xFFF), id, compatibleIDs[j]) }
        }
        for (i, id) in device.compatibleIDs.enumerated() {
            let upper = id.uppercased()
            if upper == infHardware, let hardwareID { consider(0x2000 + min(i, 0xFFF), id, hardwareID) }
            if let j = infCompatible.firstIndex(of: upper) {
                // The INF's compatible-ID position counts in the hundreds, the device's in the units.
                consider(0x3000 + min(j, 0xF) * 0x100 + min(i, 0xFF), id, compatibleIDs[j])
            }
        }
        return best
    }

    /// Whether `a` should be installed rather than `b`: lower rank, then newer DriverVer date,
    /// then higher DriverVer version (what PnP does among equally ranked signed drivers).
    static func isBetter(_ a: DriverMatch, than b: DriverMatch) -> Bool {
        if a.rank != b.rank { return a.rank < b.rank }
        let zeroDate = DriverDate(year: 0, month: 0, day: 0), zeroVersion = DriverVersion(parts: [0, 0, 0, 0])
        let (da, db) = (a.driverDate ?? zeroDate, b.driverDate ?? zeroDate)
        if da != db { return da > db }
        let (va, vb) = (a.driverVersion ?? zeroVersion, b.driverVersion ?? zeroVersion)
        if va != vb { return va > vb }
        // Stable, so the same share gives the same plan on every machine.
        return (a.package.name, a.infPath) < (b.package.name, b.infPath)
    }

    public static func match(devices: [Device], packages: [DriverPackage], architecture: Architecture) -> MatchResult {
        match(devices: devices, packages: packages, target: TargetOS(architecture: architecture))
    }

    public static func match(devices: [Device], packages: [DriverPackage], target: TargetOS) -> MatchResult {
        struct Candidate { var package: DriverPackage; var inf: INFFile; var model: INFModel }
        var candidates: [Candidate] = []
        var problems: [INFError] = packages.flatMap(\.problems)
        for package in packages {
            for inf in package.infs {
                do {
                    for model in try inf.models(for: target) { candidates.append(Candidate(package: package, inf: inf, model: model)) }
                } catch let error as INFError {
                    problems.append(error)
                } catch {
                    problems.append(INFError(path: inf.path, line: nil, message: "\(error)"))
                }
            }
        }
        var matches: [DriverMatch] = []
        var unmatched: [Device] = []
        for device in devices {
            var best: DriverMatch? = nil
            for candidate in candidates {
                guard let score = rank(device: device, hardwareID: candidate.model.hardwareID,
                                       compatibleIDs: candidate.model.compatibleIDs) else { continue }
                let match = DriverMatch(device: device, package: candidate.package, infPath: candidate.inf.path,
                                        modelDescription: candidate.model.description,
                                        installSection: candidate.model.installSection,
                                        matchedDeviceID: score.deviceID, matchedINFID: score.infID, rank: score.rank,
                                        driverDate: candidate.inf.version.driverDate,
                                        driverVersion: candidate.inf.version.driverVersion)
                if let current = best, !isBetter(match, than: current) { continue }
                best = match
            }
            if let best { matches.append(best) } else { unmatched.append(device) }
        }
        let used = Set(matches.map(\.package.name))
        return MatchResult(matches: matches, unmatchedDevices: unmatched,
                           unusedPackages: packages.filter { !used.contains($0.name) }, problems: problems)
    }
}
