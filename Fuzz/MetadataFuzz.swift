// Fuzz target: an image's metadata resource (security data and directory tree) and the XML
// data, parsed straight from the input bytes. Compiled into the WIM module by scripts/fuzz.
public func fuzzMetadata(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    if let metadata = try? ImageMetadata(bytes, image: 1, path: "fuzz") {
        // Walk every path, as dir and apply do.
        for index in metadata.entries.indices { _ = metadata.path(of: index) }
        _ = ApplyPlanProbe.count(metadata)
    }
    _ = try? WIMXMLInfo(utf16leBytes: bytes, path: "fuzz")
    if let text = String(validatingCString: bytes.map { CChar(bitPattern: $0) } + [0]) {
        _ = try? XMLParser.parse(text)
    }
    return 0
}

enum ApplyPlanProbe {
    static func count(_ m: ImageMetadata) -> Int {
        var n = 0
        var stack = [0]
        while let i = stack.popLast(), n < 1_000_000 {
            n += 1
            if m.entries[i].isDirectory { stack.append(contentsOf: m.children(of: i)) }
        }
        return n
    }
}
