// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Imprint",
    products: [
        .executable(name: "imprint", targets: ["imprint"]),
        .library(name: "WIM", targets: ["WIM"]),
        .library(name: "Apply", targets: ["Apply"]),
        .library(name: "Disks", targets: ["Disks"]),
        .library(name: "Transport", targets: ["Transport"]),
        .library(name: "Drivers", targets: ["Drivers"]),
        .library(name: "DiskModel", targets: ["DiskModel"]),
        .library(name: "SequenceModel", targets: ["SequenceModel"]),
        .library(name: "SequenceRunner", targets: ["SequenceRunner"]),
        .library(name: "Registry", targets: ["Registry"]),
        .library(name: "Boot", targets: ["Boot"]),
        .library(name: "Server", targets: ["Server"]),
        .executable(name: "imprint-server", targets: ["imprint-server"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The deployment server only: HTTP, its database and logs. The agent links none of these.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.0.0"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.0.0"),
        .package(url: "https://github.com/vapor/sqlite-nio", from: "1.13.0"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.21.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.0.0"),
    ],
    targets: [
        // SHA-1 (and later SHA-256) from the system's libcrypto, which uses the CPU's SHA
        // instructions; hashing every blob must not be the bottleneck of verify or apply.
        .systemLibrary(name: "CLibCrypto", path: "Sources/CLibCrypto"),
        // wimlib itself: for the tests only, as the reference our code is compared against.
        .systemLibrary(name: "CWimlibReference", path: "Sources/CWimlibReference"),
        // Linux system calls Swift cannot reach directly (openat2, used to stay inside a target).
        // Not "CSystem": swift-system (under swift-nio, under the server) has a target of that name.
        .systemLibrary(name: "CImprintSystem", path: "Sources/CImprintSystem"),
        // libntfs-3g: apply straight into an NTFS volume (no FUSE mount), as wimlib's NTFS mode.
        .systemLibrary(name: "CNTFS3G", path: "Sources/CNTFS3G"),
        // libblkid: partition tables, filesystems and their labels, as util-linux sees them.
        .systemLibrary(name: "CBlkid", path: "Sources/CBlkid"),
        // libcurl: all HTTP. liblzma: .xz images and driver bundles.
        .systemLibrary(name: "CCurl", path: "Sources/CCurl"),
        .systemLibrary(name: "CLZMA", path: "Sources/CLZMA"),

        // The kinds of failure (bad input, refused, network, disk, interrupted, internal) every
        // error declares, so `imprint` exits by kind and the dashboard groups failures by it.
        .target(name: "Failures"),
        // The WIM format: header, blob table, XML, metadata, decompressors, readers.
        .target(name: "WIM", dependencies: ["CLibCrypto", "Failures"]),
        // Apply targets: where the entries of an image are written (a directory, an NTFS volume).
        .target(name: "Apply", dependencies: ["WIM", "DiskModel", "Failures", "CImprintSystem", "CNTFS3G"]),
        // What a disk is and what may be done to it, in pure Swift: the disk model, selection
        // rules, partition layouts and the table writer, format specs, a refresh's clean-up
        // policy. What a task sequence's JSON reaches; no C library, so the server can link it.
        .target(name: "DiskModel", dependencies: ["Failures"]),
        // Disks: discover, choose, partition and format, never the wrong one.
        .target(name: "Disks", dependencies: ["DiskModel", "CBlkid", "CNTFS3G", "CImprintSystem"]),
        // Transport: HTTP(S) through libcurl (resume, retries, Range reads, streams), xz streams.
        .target(name: "Transport", dependencies: ["CCurl", "CLZMA", "CLibCrypto", "Failures"]),
        // Drivers: INF files, the machine's PCI and USB IDs, matching as Windows PnP ranks them.
        .target(name: "Drivers", dependencies: ["Transport", "Failures"]),
        // Registry hives (regf): read, write a new one, edit one in place. No dependencies.
        .target(name: "Registry", dependencies: ["Failures"]),
        // Making a disk bootable: the BCD store, boot files on the ESP, the firmware's boot entry.
        .target(name: "Boot", dependencies: ["Registry", "Apply", "Disks", "DiskModel", "Failures", "CNTFS3G", "CBlkid"]),
        // Task sequences as data: the format, parser and checker, variables, conditions, facts and
        // events. What the server reads and writes; no C library.
        .target(name: "SequenceModel", dependencies: ["DiskModel", "Failures"]),
        // Running task sequences on a machine: the engine, every step, gathering facts, the
        // event spool and reporter.
        .target(
            name: "SequenceRunner",
            dependencies: ["SequenceModel", "DiskModel", "Failures", "WIM", "Apply", "Disks", "Transport", "Drivers", "Boot", "Registry"]
        ),
        // The command-line tool.
        .executableTarget(
            name: "imprint",
            dependencies: [
                "WIM", "Apply", "Disks", "DiskModel", "Failures", "Transport", "Drivers", "SequenceModel", "SequenceRunner", "CImprintSystem",
                "Boot", "Registry",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The deployment server: check-in, sequences, events, content, admin API, metrics.
        .target(
            name: "Server",
            dependencies: [
                "SequenceModel", "Failures",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            // The API's description, for people and for a test that compares it with the routes.
            exclude: ["openapi.yaml"]
        ),
        .executableTarget(
            name: "imprint-server",
            dependencies: [
                "Server",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What every test target shares: scratch directories, running programs.
        .target(name: "TestSupport", path: "Tests/TestSupport", exclude: ["http_test_server.py", "browser.py"]),
        .testTarget(
            name: "WIMTests",
            dependencies: ["WIM", "Apply", "DiskModel", "CWimlibReference", "CImprintSystem", "TestSupport", "imprint"]
        ),
        .testTarget(
            name: "DisksTests",
            dependencies: ["Disks", "DiskModel", "CImprintSystem", "TestSupport", "imprint"]
        ),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "TestSupport"]),
        .testTarget(name: "DriversTests", dependencies: ["Drivers", "TestSupport"]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "TestSupport"]),
        .testTarget(name: "BootTests", dependencies: ["Boot", "Registry", "Apply", "DiskModel", "TestSupport", "imprint"]),
        .testTarget(
            name: "SequenceTests",
            dependencies: ["SequenceModel", "SequenceRunner", "Disks", "DiskModel", "Failures", "Transport", "TestSupport", "imprint"]
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "Server", "SequenceModel", "SequenceRunner", "Transport", "TestSupport", "imprint", "imprint-server",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]
        ),
    ]
)
