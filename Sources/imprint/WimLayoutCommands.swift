import ArgumentParser
import Foundation
import WIM

/// The layout options of `imprint wim capture`: integrity table, solid resources, pipable.
struct LayoutOptions: ParsableArguments {
    @Flag(help: "Write an integrity table (SHA-1 of every 10 MiB of the file), which `wim verify --check` checks.")
    var check = false
    @Flag(help: "Put all file data into solid resources (WIM version 3584), compressed together in large chunks.")
    var solid = false
    @Option(help: "Compression of the solid resources: none, xpress, lzx or lzms, with an optional level after a colon (default lzms).")
    var solidCompress = CompressionChoice(.lzms)
    @Option(help: "Chunk size of the solid resources in bytes, a power of two (default: 67108864 for LZMS, else 32768).")
    var solidChunkSize: Int?
    @Flag(help: "Write a pipable WIM (wimlib's format), which `wim apply -` and `wimlib-imagex apply -` read from a pipe.")
    var pipable = false

    func options() throws -> WIMLayoutOptions {
        if pipable && solid { throw ValidationError("--pipable and --solid cannot be combined: a pipable WIM has no solid resources") }
        if !solid && solidChunkSize != nil { throw ValidationError("--solid-chunk-size needs --solid") }
        if solid && solidCompress.format == .none {
            // The format has a code for it, but wimlib (and so, likely, WIMGAPI) refuses to read it.
            throw ValidationError("--solid-compress none: solid resources must be compressed (wimlib-imagex and Windows do not read uncompressed ones)")
        }
        return WIMLayoutOptions(integrity: check,
                                solid: solid ? .init(compression: solidCompress.format, level: solidCompress.level, chunkSize: solidChunkSize) : nil,
                                pipable: pipable)
    }
}

/// `imprint wim split`
struct WimSplit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "split",
        abstract: "Split a WIM into parts (NAME.swm, NAME2.swm, ...) of at most the given size, as wimlib-imagex split and DISM write them.")

    @Argument(help: "The WIM to split.") var file: String
    @Argument(help: "The first part to write (for example install.swm); the others get 2, 3... before the extension.") var part: String
    @Option(help: "The largest part, in MiB (a single larger resource gets a part of its own).") var partSize: Double
    @Flag(help: "Write an integrity table into each part.") var check = false

    func run() throws {
        do {
            guard partSize > 0 else { throw ValidationError("--part-size must be more than 0 MiB") }
            let wim = try WIMArchive(path: file)
            let names = try SplitWriter.split(wim, to: part, partSize: UInt64(partSize * 1_048_576), integrity: check)
            print("Split \(file) into \(names.count) part\(names.count == 1 ? "" : "s"): \(names.joined(separator: ", "))")
        } catch {
            throw fail(error)
        }
    }
}

/// `imprint wim join`
struct WimJoin: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "join",
        abstract: "Join the parts of a split WIM (in any order) into one WIM.")

    @Argument(help: "The WIM to write; it must not exist yet.") var output: String
    @Argument(help: "Every part of the split WIM.") var parts: [String]
    @Flag(help: "Write an integrity table.") var check = false

    func run() throws {
        do {
            guard !parts.isEmpty else { throw ValidationError("name the parts to join") }
            // Part 1 holds the images; it may be given in any position.
            var first: String?
            for path in parts {
                let handle = try WIMFileHandle(path: path)
                let header = try WIMHeader(try handle.read(count: Int(min(handle.size, UInt64(WIMHeader.diskSize))), at: 0, what: "WIM header"), path: path)
                if header.partNumber == 1 { first = path; break }
            }
            guard let first else { throw ValidationError("none of the files given is part 1 of a split WIM") }
            let wim = try WIMArchive(path: first, referenceParts: parts)
            try SplitWriter.join(wim, to: output, integrity: check)
            print("Joined \(wim.parts.count) part\(wim.parts.count == 1 ? "" : "s") into \(output)")
        } catch {
            throw fail(error)
        }
    }
}
