// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Imprint",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "imprint", targets: ["imprint"]),
        .library(name: "WIM", targets: ["WIM"]),
        .library(name: "Apply", targets: ["Apply"]),
        .library(name: "Disks", targets: ["Disks"]),
        .library(name: "Transport", targets: ["Transport"]),
        .library(name: "Drivers", targets: ["Drivers"]),
        .library(name: "Sequence", targets: ["Sequence"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    ],
    targets: [
        // SHA-1 (and later SHA-256) from the system's libcrypto, which uses the CPU's SHA
        // instructions; hashing every blob must not be the bottleneck of verify or apply.
        .systemLibrary(name: "CLibCrypto", path: "Sources/CLibCrypto"),
        // wimlib itself: for the tests only, as the reference our code is compared against.
        .systemLibrary(name: "CWimlibReference", path: "Sources/CWimlibReference"),
        // Linux system calls Swift cannot reach directly (openat2, used to stay inside a target).
        .systemLibrary(name: "CSystem", path: "Sources/CSystem"),
        // libntfs-3g: apply straight into an NTFS volume (no FUSE mount), as wimlib's NTFS mode.
        .systemLibrary(name: "CNTFS3G", path: "Sources/CNTFS3G"),
        // libblkid: partition tables, filesystems and their labels, as util-linux sees them.
        .systemLibrary(name: "CBlkid", path: "Sources/CBlkid"),
        // libcurl: all HTTP. liblzma: .xz images and driver bundles.
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .systemLibrary(name: "CLZMA", path: "Sources/CLZMA"),

        // The WIM format: header, blob table, XML, metadata, decompressors, readers.
        .target(name: "WIM", dependencies: ["CLibCrypto"]),
        // Apply targets: where the entries of an image are written (a directory, an NTFS volume).
        .target(name: "Apply", dependencies: ["WIM", "CSystem", "CNTFS3G"]),
        // Disks: discover, choose, partition and format, never the wrong one.
        .target(name: "Disks", dependencies: ["CBlkid", "CNTFS3G", "CSystem"]),
        // Transport: HTTP(S) through libcurl (resume, retries, Range reads, streams), xz streams.
        .target(name: "Transport", dependencies: ["CCurl", "CLZMA", "CLibCrypto"]),
        // Drivers: INF files, the machine's PCI and USB IDs, matching as Windows PnP ranks them.
        .target(name: "Drivers", dependencies: ["Transport"]),
        // Task sequences: the format, validation, facts, the engine, every step, events.
        .target(name: "Sequence", dependencies: ["WIM", "Apply", "Disks", "Transport", "Drivers"]),
        // The command-line tool.
        .executableTarget(
            name: "imprint",
            dependencies: [
                "WIM", "Apply", "Disks", "Transport", "Drivers", "Sequence", "CSystem",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // What every test target shares: scratch directories, running programs.
        .target(name: "TestSupport", path: "Tests/TestSupport", exclude: ["http_test_server.py"]),
        .testTarget(
            name: "WIMTests",
            dependencies: ["WIM", "Apply", "CWimlibReference", "CSystem", "TestSupport", "imprint"]
        ),
        .testTarget(
            name: "DisksTests",
            dependencies: ["Disks", "CSystem", "TestSupport", "imprint"]
        ),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "TestSupport"]),
        .testTarget(name: "DriversTests", dependencies: ["Drivers", "TestSupport"]),
        .testTarget(
            name: "SequenceTests",
            dependencies: ["Sequence", "Disks", "Transport", "TestSupport", "imprint"]
        ),
    ]
)
