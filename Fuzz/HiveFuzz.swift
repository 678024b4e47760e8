// libFuzzer target for registry hives as Imprint meets them: the SOFTWARE hive of an applied
// image (edited in place to add the drivers folder to DevicePath) and BCD stores read back.
// Compiled into the Registry module by scripts/fuzz (one binary for every target; HiveFuzz).
//
// Every input must be read or rejected with an error; every hive the editor accepts must, after
// the edit, read back whole with the new value in place.
import Foundation

private let devicePath = RegistryValue.string("DevicePath", "%SystemRoot%\\inf;%SystemDrive%\\Drivers", type: .expandString)

/// Seeds: hives our own writer makes (small, one with a big-data value, a deep one), written to
/// `folder` (IMPRINT_FUZZ_WRITE_SEEDS, see Fuzz/FuzzMain.swift), so scripts/fuzz needs no other
/// tool to start from.
public func writeHiveFuzzSeeds(to folder: String) {
    let time = Date(timeIntervalSince1970: 1_700_000_000)
    let software = RegistryKey(name: "ROOT", subkeys: [
        RegistryKey(name: "Microsoft", subkeys: [RegistryKey(name: "Windows", subkeys: [
            RegistryKey(name: "CurrentVersion", values: [.string("DevicePath", "%SystemRoot%\\inf", type: .expandString),
                                                         .string("ProgramFilesDir", "C:\\Program Files")])])])])
    let big = RegistryKey(name: "ROOT", className: "class", values: [
        RegistryValue(name: "Big", type: .binary, data: Array(repeating: 0x5A, count: 20_000)),
        RegistryValue(name: "", type: .dword, data: [1, 0, 0, 0]),
        .multiString("Multi", ["a", "b"]),
    ], subkeys: (0..<40).map { RegistryKey(name: "Key\($0)") })
    for (name, root) in [("software", software), ("big", big)] {
        if let bytes = try? HiveWriter.write(root, fileName: name, time: time) {
            _ = FileManager.default.createFile(atPath: folder + "/" + name + ".hive", contents: Data(bytes))
        }
    }
}

public func fuzzHive(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    var readsWhole = false
    if let hive = try? Hive(bytes: bytes, file: "fuzz.hive") {
        readsWhole = (try? hive.readTree()) != nil
        _ = try? hive.key(at: "Microsoft\\Windows\\CurrentVersion")
    }
    guard var editor = try? HiveEditor(bytes: bytes, file: "fuzz.hive", time: Date(timeIntervalSince1970: 1_700_000_000)),
          (try? editor.setValue(devicePath, inKey: "Microsoft\\Windows\\CurrentVersion")) != nil else { return 0 }
    let edited = editor.bytes(time: Date(timeIntervalSince1970: 1_700_000_000))
    // The editor touches only the cells on its path, so damage elsewhere in a hive stays as it
    // was; a hive that read back whole before the edit must read back whole after it.
    guard readsWhole else { return 0 }
    do {
        let reread = try Hive(bytes: edited, file: "edited.hive")
        _ = try reread.readTree()
        guard try reread.key(at: "Microsoft\\Windows\\CurrentVersion")?.value("DevicePath") == devicePath else {
            fatalError("the edited hive does not hold the new DevicePath")
        }
    } catch {
        fatalError("the editor accepted a hive that read back whole, and what it wrote does not: \(error)")
    }
    return 0
}
