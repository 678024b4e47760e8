// libFuzzer target for driver INF files, which arrive from folders, .tar.xz bundles and HTTP
// indexes a technician does not control: the parser (UTF-8, UTF-16 with or without BOM, ANSI),
// string substitution, decorated [Manufacturer] models for every architecture, CopyFiles and the
// source-file layout. Compiled by scripts/fuzz into a Drivers module of Sources/Drivers/INFFile.swift
// alone (the rest of Drivers needs libcurl), linked with every other target into one binary.
//
// Every input must parse or be rejected with an INFError that names the file and says why.
import Foundation

private let targets = Architecture.allCases.map { TargetOS(architecture: $0) }

public func fuzzINF(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let inf: INFFile
    do {
        inf = try INFFile(bytes: bytes, path: "fuzz.inf")
    } catch let error as INFError {
        if error.path != "fuzz.inf" || error.message.isEmpty { fatalError("an INF error without the file or a reason: \(error)") }
        return 0
    } catch {
        fatalError("not an INFError: \(error)")
    }
    for target in targets {
        do {
            for model in try inf.models(for: target) {
                _ = inf.installSection(named: model.installSection, for: target.architecture)
            }
            for file in try inf.requiredFiles(for: target) where file.relativePath.isEmpty {
                fatalError("a required file without a path: \(file)")
            }
            _ = inf.catalogFile(for: target.architecture)
        } catch let error as INFError {
            if error.message.isEmpty { fatalError("an INF error without a reason: \(error)") }
        } catch {
            fatalError("not an INFError: \(error)")
        }
    }
    return 0
}
