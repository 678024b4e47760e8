// The one libFuzzer binary scripts/fuzz builds (.build-fuzz/imprint-fuzz): every target in Fuzz/
// is compiled into the module it tests (each module once), and this file picks one at start:
//
//   IMPRINT_FUZZ_TARGET=LZXFuzz .build-fuzz/imprint-fuzz [libFuzzer flags] [corpus or inputs]
//   .build-fuzz/imprint-fuzz LZXFuzz [libFuzzer flags] [corpus or inputs]    (the same)
//
// A target named as the first argument is taken out of the arguments before libFuzzer reads them
// and put in IMPRINT_FUZZ_TARGET, so processes libFuzzer starts itself (-minimize_crash=1,
// -fork=N) run the same target. IMPRINT_FUZZ_WRITE_SEEDS=DIR asks a target that makes its own
// seeds (HiveFuzz, HiveLogFuzz, WindowsDetailsFuzz) to write them into DIR and exit.
import Drivers
import DiskModel
import Foundation
import InstalledWindows
import Multicast
import Registry
import SequenceModel
import WIM

private struct FuzzTarget: Sendable {
    let testOneInput: @Sendable (UnsafePointer<UInt8>, Int) -> CInt
    var writeSeeds: (@Sendable (String) -> Void)? = nil
}

/// Every target, by the name of its file in Fuzz/ (scripts/fuzz runs each by that name).
private let targets: [String: FuzzTarget] = [
    "WIMFileFuzz": FuzzTarget(testOneInput: fuzzWIMFile),
    "PipableStreamFuzz": FuzzTarget(testOneInput: fuzzPipableStream),
    "MetadataFuzz": FuzzTarget(testOneInput: fuzzMetadata),
    "XpressFuzz": FuzzTarget(testOneInput: fuzzXpress),
    "XpressRoundTripFuzz": FuzzTarget(testOneInput: fuzzXpressRoundTrip),
    "LZXFuzz": FuzzTarget(testOneInput: fuzzLZX),
    "LZXRoundTripFuzz": FuzzTarget(testOneInput: fuzzLZXRoundTrip),
    "LZMSFuzz": FuzzTarget(testOneInput: fuzzLZMS),
    "LZMSRoundTripFuzz": FuzzTarget(testOneInput: fuzzLZMSRoundTrip),
    "DiskJSONFuzz": FuzzTarget(testOneInput: fuzzDiskJSON),
    "SequenceFuzz": FuzzTarget(testOneInput: fuzzSequence),
    "CheckInFuzz": FuzzTarget(testOneInput: fuzzCheckIn),
    "HiveFuzz": FuzzTarget(testOneInput: fuzzHive, writeSeeds: writeHiveFuzzSeeds),
    "HiveLogFuzz": FuzzTarget(testOneInput: fuzzHiveLog, writeSeeds: writeHiveLogFuzzSeeds),
    "INFFuzz": FuzzTarget(testOneInput: fuzzINF),
    "MulticastFuzz": FuzzTarget(testOneInput: fuzzMulticast),
    "WindowsDetailsFuzz": FuzzTarget(testOneInput: fuzzWindowsDetails, writeSeeds: writeWindowsDetailsFuzzSeeds),
]

/// Set once by LLVMFuzzerInitialize, before libFuzzer calls the target from its one thread.
nonisolated(unsafe) private var selected: (@Sendable (UnsafePointer<UInt8>, Int) -> CInt)?

private func fail(_ message: String) -> Never {
    FileHandle.standardError.write(Data(("imprint-fuzz: " + message + "\n").data(using: .utf8)!))
    exit(2)
}

@_cdecl("LLVMFuzzerInitialize")
public func initialize(_ argc: UnsafeMutablePointer<CInt>,
                       _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>) -> CInt {
    let known = targets.keys.sorted().joined(separator: ", ")
    var name = ProcessInfo.processInfo.environment["IMPRINT_FUZZ_TARGET"]
    if name == nil, argc.pointee > 1, let first = argv.pointee[1], targets[String(cString: first)] != nil {
        let first = String(cString: first)
        // Drop it from the arguments libFuzzer is about to parse (argv[argc] is the null end).
        for i in 1..<Int(argc.pointee) { argv.pointee[i] = argv.pointee[i + 1] }
        argc.pointee -= 1
        setenv("IMPRINT_FUZZ_TARGET", first, 1)
        name = first
    }
    guard let name else { fail("name a target (IMPRINT_FUZZ_TARGET=NAME, or NAME as the first argument): \(known)") }
    guard let target = targets[name] else { fail("no fuzz target \(name); the targets: \(known)") }
    if let folder = ProcessInfo.processInfo.environment["IMPRINT_FUZZ_WRITE_SEEDS"] {
        guard let writeSeeds = target.writeSeeds else { fail("\(name) makes no seeds of its own") }
        writeSeeds(folder)
        exit(0)
    }
    selected = target.testOneInput
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    selected!(data, size)
}
