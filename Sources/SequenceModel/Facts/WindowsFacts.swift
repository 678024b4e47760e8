import InstalledWindows

/// The installed Windows as facts a sequence tests (`{"fact": "windows.build", ">=": 19045}`)
/// and read-only variables it substitutes (`${WindowsBuild}`): set by `findWindows` for the
/// installation it chose (and by `sequence plan` for the one it would choose), absent before
/// it runs, when it finds none, or when the value could not be read. On a disk with several
/// installations they are the chosen one's; `imprint disk list` shows every installation's.
public enum WindowsFacts {
    public struct Fact: Sendable {
        /// What a condition names: `windows.build`.
        public let name: String
        /// The variable holding it: `WindowsBuild`.
        public let variable: String
        let value: @Sendable (WindowsDetails) -> String?
    }

    public static let all: [Fact] = [
        Fact(name: "windows.build", variable: "WindowsBuild") { $0.build },
        Fact(name: "windows.updateBuildRevision", variable: "WindowsUBR") { $0.updateBuildRevision.map(String.init) },
        Fact(name: "windows.version", variable: "WindowsVersion") { $0.version },
        Fact(name: "windows.displayVersion", variable: "WindowsDisplayVersion") { $0.displayVersion },
        Fact(name: "windows.edition", variable: "WindowsEdition") { $0.editionID },
        Fact(name: "windows.productName", variable: "WindowsProductName") { $0.productName },
        Fact(name: "windows.installationType", variable: "WindowsInstallationType") { $0.installationType },
        Fact(name: "windows.architecture", variable: "WindowsArchitecture") { $0.architecture },
        Fact(name: "windows.computerName", variable: "WindowsComputerName") { $0.computerName },
        Fact(name: "windows.imageState", variable: "WindowsImageState") { $0.imageState },
        Fact(name: "windows.generalized", variable: "WindowsGeneralized") { $0.generalized.map { $0 ? "true" : "false" } },
        Fact(name: "windows.lastShutdown", variable: "WindowsLastShutdown") { $0.lastShutdown },
    ]

    public static let variableNames: Set<String> = Set(all.map(\.variable))

    /// The variables for an installation's details: only the values that were read.
    public static func variables(_ details: WindowsDetails?) -> [String: String] {
        guard let details else { return [:] }
        var values: [String: String] = [:]
        for fact in all {
            if let value = fact.value(details), !value.isEmpty { values[fact.variable] = value }
        }
        return values
    }
}
