/// The variable names the machine's facts take; sequences may read them but never set them.
public enum FactNames {
    public static let all: Set<String> = ["MACAddress", "MACAddresses", "UUID", "SerialNumber", "Manufacturer", "Model",
                                          "Firmware", "MemoryMiB", "CPUCount", "CPUModel", "Architecture", "DiskCount"]
}
