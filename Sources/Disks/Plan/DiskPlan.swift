import DiskModel
import Foundation

/// Planning on this machine's own disks (discovery is the Disks library's; the plan itself is
/// DiskModel's, which the server shares).
extension DiskPlan {
    public static func make(layout: PartitionLayout, rules: DiskRules, environment: DiskEnvironment = .system)
        throws(DiskError) -> DiskPlan {
        let disks = try DiskInventory.scan(environment)
        let selection = DiskSelector.evaluate(rules, disks: disks)
        let disk = try DiskSelector.choose(rules, disks: disks)
        return try make(layout: layout, on: disk, rules: rules, selection: selection)
    }
}
