/// The variable names facts take; sequences may read them but never set them.
public enum FactNames {
    /// The machine's, read when the agent starts.
    public static let machine: Set<String> = ["MACAddress", "MACAddresses", "UUID", "SerialNumber", "Manufacturer", "Model",
                                              "Firmware", "MemoryMiB", "CPUCount", "CPUModel", "Architecture", "DiskCount", "DefaultGateway"]
    /// The machine's and the installed Windows' (set by `findWindows`).
    public static let all: Set<String> = machine.union(WindowsFacts.variableNames)

    /// The variable behind a condition's `"fact"`: `windows.build` is `WindowsBuild`, and a
    /// machine fact is named as its variable (`MemoryMiB`). nil for a name that is no fact.
    public static func variable(forFact name: String) -> String? {
        if let fact = WindowsFacts.all.first(where: { $0.name == name }) { return fact.variable }
        return machine.contains(name) ? name : nil
    }

    /// Every name a condition's `"fact"` takes, as the schema lists them.
    public static var conditionFacts: [String] { WindowsFacts.all.map(\.name) + machine.sorted() }
}
