import Foundation
import Primitives

/// Why a disk was not chosen.
public struct Rejection: Sendable, Equatable, Encodable {
    /// The rule at fault: `bootMedium`, `readOnly`, `inUse`, `empty`, `removable`, `holdsData`,
    /// `unreadable`, `size`, `model`, `vendor`, `serial`, `wwn`, `name`, `transport`, `rotational`,
    /// `hasWindows`, `notPreferred`.
    public var rule: String
    /// True when no rules file can lift it: writing this disk would be wrong whatever the rules say.
    public var hard: Bool
    public var message: String

    public init(rule: String, hard: Bool, message: String) {
        self.rule = rule
        self.hard = hard
        self.message = message
    }
}

public struct DiskVerdict: Sendable, Encodable {
    public var disk: Disk
    public var rejections: [Rejection]
    public var chosen: Bool

    public init(disk: Disk, rejections: [Rejection], chosen: Bool) {
        self.disk = disk
        self.rejections = rejections
        self.chosen = chosen
    }
}

public struct DiskSelection: Sendable, Encodable {
    public var chosen: Disk?
    /// One per disk, in the order discovery listed them.
    public var verdicts: [DiskVerdict]

    public init(chosen: Disk?, verdicts: [DiskVerdict]) {
        self.chosen = chosen
        self.verdicts = verdicts
    }

    /// For the technician: the chosen disk first, then every other disk with all its reasons,
    /// so one run shows everything that would have to change.
    public func report() -> String {
        var lines: [String] = []
        if let chosen {
            lines.append("chosen: " + DiskSelector.summary(chosen))
        } else {
            lines.append(verdicts.isEmpty ? "chosen: none (no disks found)" : "chosen: none")
        }
        for verdict in verdicts where !verdict.chosen {
            lines.append("rejected: " + DiskSelector.summary(verdict.disk))
            for rejection in verdict.rejections {
                lines.append("    - " + rejection.message + (rejection.hard ? " [never allowed]" : ""))
            }
        }
        return lines.joined(separator: "\n")
    }
}

public enum DiskSelector {
    /// Judges every disk against every rule. Safety rules come first and are all listed, so a
    /// disk that is both the boot medium and read-only says so twice rather than once.
    public static func evaluate(_ rules: DiskRules, disks: [Disk]) -> DiskSelection {
        var verdicts = disks.map { DiskVerdict(disk: $0, rejections: rejections(of: $0, under: rules), chosen: false) }
        let candidates = verdicts.indices.filter { verdicts[$0].rejections.isEmpty }
        guard let best = preferred(among: candidates, of: verdicts.map(\.disk), by: rules.prefer) else {
            return DiskSelection(chosen: nil, verdicts: verdicts)
        }
        let winner = verdicts[best].disk
        verdicts[best].chosen = true
        for index in candidates where index != best {
            verdicts[index].rejections.append(Rejection(rule: "notPreferred", hard: false,
                message: "matches, but prefer=\(rules.prefer.rawValue) chose \(winner.name) (\(ByteSize.format(winner.size)))"))
        }
        return DiskSelection(chosen: winner, verdicts: verdicts)
    }

    /// The chosen disk, or every disk's reasons on one line each.
    public static func choose(_ rules: DiskRules, disks: [Disk]) throws(DiskError) -> Disk {
        let selection = evaluate(rules, disks: disks)
        if let chosen = selection.chosen { return chosen }
        guard !disks.isEmpty else { throw DiskError.noDiskMatches(reasons: ["no disks found"]) }
        throw DiskError.noDiskMatches(reasons: selection.verdicts.map { verdict in
            let details = [ByteSize.format(verdict.disk.size), label(verdict.disk.model)].compactMap { $0 }
            return "\(verdict.disk.name) (\(details.joined(separator: ", "))): "
                + verdict.rejections.map(\.message).joined(separator: "; ")
        })
    }

    package static func rejections(of disk: Disk, under rules: DiskRules) -> [Rejection] {
        var found: [Rejection] = []
        func hard(_ rule: String, _ message: String) { found.append(Rejection(rule: rule, hard: true, message: message)) }
        func soft(_ rule: String, _ message: String) { found.append(Rejection(rule: rule, hard: false, message: message)) }

        if let reason = disk.bootMedium { hard("bootMedium", "the agent booted from it (\(reason))") }
        if disk.readOnly { hard("readOnly", "read-only") }
        if !disk.usage.isEmpty { hard("inUse", "in use: " + disk.usage.map(\.description).joined(separator: ", ")) }
        if disk.size == 0 { hard("empty", "no medium (size 0)") }
        // Unread contents cannot be listed as what a wipe would lose, so not even wipe lifts it.
        if let reason = disk.unreadable { hard("unreadable", "contents could not be read (\(reason))") }

        if rules.removable == true {
            if !disk.removable { soft("removable", "not removable, wanted \"removable\": true") }
        } else if disk.removable {
            soft("removable", "removable (USB stick, card): allowed only with \"removable\": true")
        }
        if disk.holdsData, !rules.wipe {
            soft("holdsData", "holds data a wipe would destroy (\(contents(of: disk))): allowed only with \"wipe\": true")
        }

        for condition in rules.size where !condition.holds(for: disk.size) {
            var actual = ByteSize.format(disk.size)
            // When rounding hides the difference ("64 GiB is not > 64GiB"), the bytes show it.
            if actual == ByteSize.format(condition.bytes) || actual == condition.sizeText {
                actual += " (\(disk.size) bytes)"
            }
            soft("size", "size \(actual) is not \(condition.text)")
        }
        let texts: [(String, Glob?, String?)] = [
            ("model", rules.model, disk.model), ("vendor", rules.vendor, disk.vendor),
            ("serial", rules.serial, disk.serial), ("wwn", rules.wwn, disk.wwn),
        ]
        for (rule, pattern, value) in texts {
            guard let pattern else { continue }
            guard let value = label(value) else {
                soft(rule, "\(rule) unknown, wanted \"\(pattern.pattern)\"")
                continue
            }
            if !pattern.matches(value) { soft(rule, "\(rule) \"\(value)\" does not match \"\(pattern.pattern)\"") }
        }
        if let pattern = rules.name, !pattern.matches(disk.path), !pattern.matches(disk.name) {
            soft("name", "name \(disk.path) does not match \"\(pattern.pattern)\"")
        }
        if let transports = rules.transport, !transports.contains(disk.transport) {
            soft("transport", "transport \(disk.transport.rawValue) is not "
                + transports.map(\.rawValue).joined(separator: " or "))
        }
        if let rotational = rules.rotational, rotational != disk.rotational {
            soft("rotational", (disk.rotational ? "rotational (spinning disk)" : "not rotational (solid state)")
                + ", wanted \"rotational\": \(rotational)")
        }
        if let hasWindows = rules.hasWindows, hasWindows == disk.windows.isEmpty {
            soft("hasWindows", hasWindows
                ? "no Windows installation found, wanted \"hasWindows\": true"
                : "holds " + disk.windows.map(windowsPlace).joined(separator: ", ") + ", wanted \"hasWindows\": false")
        }
        return found
    }

    /// What a wipe would lose, in words: `GPT, 3 partitions; ntfs "Windows", vfat; Windows on partition 3`.
    static func contents(of disk: Disk) -> String {
        var parts: [String] = []
        if let table = disk.partitionTable, !table.partitions.isEmpty {
            let count = table.partitions.count
            parts.append("\(table.type.rawValue.uppercased()), \(count) partition\(count == 1 ? "" : "s")")
        }
        let filesystems = disk.filesystems.map { filesystem in
            filesystem.type + (label(filesystem.label).map { " \"\($0)\"" } ?? "")
        }
        if !filesystems.isEmpty { parts.append(filesystems.joined(separator: ", ")) }
        if !disk.windows.isEmpty { parts.append(disk.windows.map(windowsPlace).joined(separator: ", ")) }
        return parts.joined(separator: "; ")
    }

    static func windowsPlace(_ windows: WindowsInstallation) -> String {
        windows.partition.map { "Windows on partition \($0)" } ?? "Windows on the whole disk"
    }

    /// `/dev/sdc  64 GiB  Samsung SSD 970  serial S4EV...  nvme`
    static func summary(_ disk: Disk) -> String {
        [disk.path, ByteSize.format(disk.size), label(disk.model), label(disk.serial).map { "serial \($0)" },
         disk.transport.rawValue].compactMap { $0 }.joined(separator: "  ")
    }

    /// sysfs pads text fields with spaces, and an all-blank one says nothing.
    static func label(_ text: String?) -> String? {
        guard let trimmed = text?.trimmingCharacters(in: .whitespaces), !trimmed.isEmpty else { return nil }
        return trimmed
    }

    static func preferred(among candidates: [Int], of disks: [Disk], by preference: DiskRules.Preference) -> Int? {
        candidates.min { left, right in
            let a = disks[left], b = disks[right]
            switch preference {
            case .smallest where a.size != b.size: return a.size < b.size
            case .largest where a.size != b.size: return a.size > b.size
            // Equal sizes fall back to name order so the choice never depends on discovery order.
            default: return KernelName.precedes(a.name, b.name)
            }
        }
    }
}

/// Kernel name order: numbers compare by value (nvme2n1 < nvme10n1), and within a family
/// that numbers disks with letters the shorter name comes first, as the kernel names the
/// 27th SCSI disk sdaa, after sdz.
package enum KernelName {
    private static let letterIndexed = ["xvd", "sd", "vd", "hd"]

    package static func precedes(_ left: String, _ right: String) -> Bool {
        let a = runs(left), b = runs(right)
        for (position, (x, y)) in zip(a, b).enumerated() where x != y {
            let xDigits = x.first?.isASCIIDigit ?? false, yDigits = y.first?.isASCIIDigit ?? false
            if xDigits != yDigits { return xDigits }
            if xDigits {
                let xValue = x.drop(while: { $0 == "0" }), yValue = y.drop(while: { $0 == "0" })
                if xValue.count != yValue.count { return xValue.count < yValue.count }
                if xValue != yValue { return xValue < yValue }
            } else if position == 0, x.count != y.count,
                      letterIndexed.contains(where: { x.hasPrefix($0) && y.hasPrefix($0) }) {
                return x.count < y.count
            }
            if x != y { return x < y }
        }
        return a.count < b.count
    }

    private static func runs(_ name: String) -> [Substring] {
        var result: [Substring] = []
        var start = name.startIndex
        for index in name.indices where index != start {
            if name[index].isASCIIDigit != name[name.index(before: index)].isASCIIDigit {
                result.append(name[start..<index])
                start = index
            }
        }
        if start < name.endIndex { result.append(name[start...]) }
        return result
    }
}

private extension Character {
    var isASCIIDigit: Bool { isASCII && isNumber }
}
