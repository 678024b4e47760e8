import Foundation
import Testing
import TestSupport
@testable import DiskModel
@testable import Disks

/// `imprint disk ...` run as a technician would, JSON decoded.
func imprintDisk(_ arguments: [String], allowFailure: Bool = false,
                 sourceLocation: SourceLocation = #_sourceLocation) throws -> CommandResult {
    try run([imprintBinary, "disk"] + arguments, allowFailure: allowFailure, sourceLocation: sourceLocation)
}

func listDisks(_ extra: [String] = []) throws -> [Disk] {
    let result = try imprintDisk(["list", "--json"] + extra)
    return try JSONDecoder().decode([Disk].self, from: result.stdout)
}
