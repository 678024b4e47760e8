import Foundation
import TestSupport
import Testing

/// The server depends on the task-sequence model only: it reads sequences, facts and events as
/// data and never touches a disk, so the agent's C libraries must not reach its binary.
@Suite("What imprint-server links")
struct LinkedLibrariesTests {
    static let agentOnlyLibraries = ["libntfs-3g", "libblkid", "libcurl", "liblzma"]

    static func linkedLibraries(_ binary: String) throws -> [String] {
        let result = try run(["ldd", binary])
        return String(decoding: result.stdout, as: UTF8.self).split(separator: "\n")
            .compactMap { $0.split(separator: " ").first.map { String($0.trimmingCharacters(in: .whitespaces)) } }
    }

    @Test func serverLinksNoneOfTheAgentsLibraries() throws {
        let libraries = try Self.linkedLibraries(ServerProcess.binary)
        #expect(!libraries.isEmpty, "ldd listed nothing for \(ServerProcess.binary)")
        for name in Self.agentOnlyLibraries {
            #expect(!libraries.contains { $0.hasPrefix(name) }, "imprint-server links \(name): \(libraries)")
        }
    }

    /// The same check on the agent, so a silent ldd (or a changed library name) cannot make the
    /// test above pass by finding nothing.
    @Test func agentLinksThemAll() throws {
        let libraries = try Self.linkedLibraries(imprintBinary)
        for name in Self.agentOnlyLibraries {
            #expect(libraries.contains { $0.hasPrefix(name) }, "imprint does not link \(name): \(libraries)")
        }
    }
}
