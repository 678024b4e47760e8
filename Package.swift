// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "Imprint",
    products: [
        .executable(name: "imprint", targets: ["imprint"]),
        .library(name: "WIM", targets: ["WIM"]),
        .library(name: "Apply", targets: ["Apply"]),
        .library(name: "Capture", targets: ["Capture"]),
        .library(name: "Disks", targets: ["Disks"]),
        .library(name: "Transport", targets: ["Transport"]),
        .library(name: "Drivers", targets: ["Drivers"]),
        .library(name: "DiskModel", targets: ["DiskModel"]),
        .library(name: "SequenceModel", targets: ["SequenceModel"]),
        .library(name: "SequenceRunner", targets: ["SequenceRunner"]),
        .library(name: "Registry", targets: ["Registry"]),
        .library(name: "InstalledWindows", targets: ["InstalledWindows"]),
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
        // libhivex: for the registry tests only, the reader real Windows hives are compared with.
        .systemLibrary(name: "CHivexReference", path: "Sources/CHivexReference"),
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
        // What several formats share, in pure Swift so the server can link it: globs with the case
        // rule stated at each use, GUIDs in their textual and on-disk forms, little-endian fields.
        .target(name: "Primitives"),
        // SHA-1 and SHA-256 from libcrypto, for the agent: WIM blobs, downloads, images.
        .target(name: "Digests", dependencies: ["CLibCrypto"]),
        // The WIM format: header, blob table, XML, metadata, decompressors, readers.
        .target(name: "WIM", dependencies: ["Primitives", "Digests", "Failures"]),
        // Capture sources: where the entries of a new image are read from (a directory, an NTFS
        // volume through libntfs-3g); the registry hives say which Windows an image holds.
        // Reading an NTFS volume through libntfs-3g where several modules do the same: folder
        // listings, a file's data stream read whole.
        .target(name: "NTFSAccess", dependencies: ["CNTFS3G", "Primitives"]),
        // Capture itself is pure Swift and glibc, so the server can service images (add files to
        // one); NTFSCapture reads an NTFS volume through libntfs-3g, for the agent and the tool.
        .target(name: "Capture", dependencies: ["WIM", "Primitives", "Digests", "Failures", "CImprintSystem", "Registry", "InstalledWindows"]),
        .target(name: "NTFSCapture", dependencies: ["Capture", "WIM", "Primitives", "Failures", "CNTFS3G", "NTFSAccess"]),
        // Apply targets: where the entries of an image are written (a directory, an NTFS volume).
        .target(name: "Apply", dependencies: ["WIM", "DiskModel", "Primitives", "Digests", "Failures", "Processes", "CImprintSystem", "CNTFS3G", "NTFSAccess"]),
        // What a disk is and what may be done to it, in pure Swift: the disk model, selection
        // rules, partition layouts and the table writer, format specs, a refresh's clean-up
        // policy. What a task sequence's JSON reaches; no C library, so the server can link it.
        .target(name: "DiskModel", dependencies: ["Primitives", "Failures", "InstalledWindows"]),
        // Running a program: output streamed and collected, its whole process group stopped on a
        // timeout, errors that show the end of its output. Glibc only; the server needs none of it.
        .target(name: "Processes"),
        // Disks: discover, choose, partition and format, never the wrong one.
        .target(name: "Disks", dependencies: ["DiskModel", "InstalledWindows", "Primitives", "Processes", "CBlkid", "CNTFS3G", "NTFSAccess", "CImprintSystem"]),
        // Transport: HTTP(S) through libcurl (resume, retries, Range reads, streams), xz streams.
        .target(name: "Transport", dependencies: ["CCurl", "CLZMA", "Digests", "Failures"]),
        // Multicast sessions: our carousel protocol (datagrams, block manifests, the sender, the
        // receiver). Pure Swift over Glibc sockets: the server sends, the agent receives.
        .target(name: "Multicast", dependencies: ["Digests", "Failures", "Primitives"]),
        // A multicast session's blocks applied as they arrive: a WIM's blobs, a raw image's sectors.
        .target(name: "MulticastApply", dependencies: ["Multicast", "WIM", "Apply", "Transport", "Digests", "Failures", "Primitives"]),
        // Drivers: INF files, the machine's PCI and USB IDs, matching as Windows PnP ranks them.
        .target(name: "Drivers", dependencies: ["Transport", "Failures"]),
        // Registry hives (regf): read, write a new one, edit one in place. No C library.
        .target(name: "Registry", dependencies: ["Primitives", "Failures"]),
        // What an installed Windows is (edition, version, build, architecture, computer name,
        // image state, last shutdown), read from the hive and kernel32.dll bytes it is given:
        // one reader for a captured image's XML, `imprint disk list` and the `windows.*` facts.
        // Pure Swift, so the disk model (and the server through it) can carry the result.
        .target(name: "InstalledWindows", dependencies: ["Registry", "Primitives"]),
        // Making a disk bootable: the BCD store, boot files on the ESP, the firmware's boot entry.
        .target(name: "Boot", dependencies: ["Registry", "InstalledWindows", "Apply", "Disks", "DiskModel", "Primitives", "Processes", "Failures", "CNTFS3G", "CBlkid"]),
        // Task sequences as data: the format, parser and checker, variables, conditions, facts and
        // events. What the server reads and writes; no C library.
        .target(name: "SequenceModel", dependencies: ["DiskModel", "InstalledWindows", "Primitives", "Failures"]),
        // Running task sequences on a machine: the engine, every step, gathering facts, the
        // event spool and reporter.
        .target(
            name: "SequenceRunner",
            dependencies: ["SequenceModel", "DiskModel", "Primitives", "Failures", "WIM", "Apply", "Capture", "NTFSCapture", "Disks", "Transport", "Drivers", "Boot", "Registry", "Processes", "Digests", "Multicast", "MulticastApply"]
        ),
        // The command-line tool.
        .executableTarget(
            name: "imprint",
            dependencies: [
                "WIM", "Apply", "Capture", "NTFSCapture", "Disks", "DiskModel", "Failures", "Transport", "Drivers", "SequenceModel", "SequenceRunner", "CImprintSystem",
                "Boot", "Registry", "Primitives", "Digests", "Multicast", "MulticastApply",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // The deployment server: check-in, sequences, events, content, admin API, metrics.
        .target(
            name: "Server",
            dependencies: [
                "SequenceModel", "Primitives", "Failures",
                // The image library: reading, exporting and servicing WIMs (no libntfs-3g).
                "WIM", "Capture", "Registry", "InstalledWindows", "Digests",
                // Multicast sessions: block manifests and the sender's thread.
                "Multicast",
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
                "Server", "Primitives",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        // What every test target shares: scratch directories, running programs.
        .target(name: "TestSupport", dependencies: ["Processes"], path: "Tests/TestSupport", exclude: ["http_test_server.py", "browser.py", "screenshots.py"]),
        .testTarget(
            name: "WIMTests",
            dependencies: ["WIM", "Apply", "Capture", "DiskModel", "Primitives", "Digests", "Registry", "CWimlibReference", "CImprintSystem", "TestSupport", "imprint"]
        ),
        .testTarget(
            name: "DisksTests",
            dependencies: ["Disks", "DiskModel", "Failures", "Primitives", "CImprintSystem", "TestSupport", "imprint"]
        ),
        .testTarget(name: "ProcessesTests", dependencies: ["Processes", "TestSupport"]),
        .testTarget(name: "PrimitivesTests", dependencies: ["Primitives"]),
        .testTarget(name: "MulticastTests", dependencies: ["Multicast", "MulticastApply", "Apply", "WIM", "Transport", "Digests", "Primitives", "TestSupport"]),
        .testTarget(name: "TransportTests", dependencies: ["Transport", "Digests", "TestSupport"]),
        .testTarget(name: "DriversTests", dependencies: ["Drivers", "TestSupport"]),
        .testTarget(name: "RegistryTests", dependencies: ["Registry", "InstalledWindows", "Primitives", "Failures", "Digests", "TestSupport", "CHivexReference"],
                    exclude: ["Fixtures"]),
        .testTarget(name: "BootTests", dependencies: ["Boot", "Registry", "Apply", "DiskModel", "Failures", "Primitives", "TestSupport", "imprint"],
                    exclude: ["Fixtures"]),
        .testTarget(
            name: "SequenceTests",
            dependencies: ["SequenceModel", "SequenceRunner", "Disks", "DiskModel", "InstalledWindows", "Failures", "Transport", "TestSupport", "imprint"]
        ),
        .testTarget(
            name: "ServerTests",
            dependencies: [
                "Server", "SequenceModel", "SequenceRunner", "Transport", "Registry", "TestSupport", "imprint", "imprint-server", "Multicast", "Primitives",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
            ]
        ),
    ]
)
