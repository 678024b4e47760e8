// libFuzzer target for what `imprint disk list`, findWindows and a capture read of an installed
// Windows: the same bytes given as its SOFTWARE hive, its SYSTEM hive and kernel32.dll.
// Compiled into the InstalledWindows module by scripts/fuzz (one binary for every target).
//
// Every input must give details or problems, never a crash; a problem names the volume.
import Foundation
import Registry

/// Seeds: one hive holding the keys of both hives (CurrentVersion, Setup\State, Select, the
/// control set's ComputerName and Windows), written by our own writer to `folder`.
public func writeWindowsDetailsFuzzSeeds(to folder: String) {
    let hive = RegistryKey(name: "ROOT", subkeys: [
        RegistryKey(name: "Microsoft", subkeys: [
            RegistryKey(name: "Windows NT", subkeys: [RegistryKey(name: "CurrentVersion", values: [
                .string("ProductName", "Windows 10 Pro"), .string("EditionID", "Professional"), .string("CurrentBuild", "19045"),
                .dword("CurrentMajorVersionNumber", 10), .dword("CurrentMinorVersionNumber", 0), .dword("UBR", 3803),
                .string("DisplayVersion", "22H2"),
            ])]),
            RegistryKey(name: "Windows", subkeys: [RegistryKey(name: "CurrentVersion", subkeys: [RegistryKey(name: "Setup", subkeys: [
                RegistryKey(name: "State", values: [.string("ImageState", "IMAGE_STATE_COMPLETE")]),
            ])])]),
        ]),
        RegistryKey(name: "Select", values: [.dword("Current", 1)]),
        RegistryKey(name: "ControlSet001", subkeys: [RegistryKey(name: "Control", subkeys: [
            RegistryKey(name: "ComputerName", subkeys: [RegistryKey(name: "ComputerName", values: [.string("ComputerName", "PC-1")])]),
            RegistryKey(name: "Windows", values: [.binary("ShutdownTime", [0x00, 0x84, 0xE0, 0xCA, 0x9D, 0x47, 0xDA, 0x01])]),
        ])]),
    ])
    if let bytes = try? HiveWriter.write(hive, fileName: "windows", time: Date(timeIntervalSince1970: 1_700_000_000)) {
        _ = FileManager.default.createFile(atPath: folder + "/windows.hive", contents: Data(bytes))
    }
}

public func fuzzWindowsDetails(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let (details, problems) = WindowsDetails.read(place: "fuzz") { _ in bytes }
    guard problems.allSatisfy({ $0.hasPrefix("fuzz") }) else { fatalError("a problem that does not name the volume: \(problems)") }
    _ = details.summary
    _ = details.version
    return 0
}
