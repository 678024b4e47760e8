// Fuzz target: a whole WIM file. Opens the input as a WIM (header, blob table, XML, solid
// resource headers), parses every image's metadata and reads every blob through the same
// pipeline `apply` uses. Any input must end in a clean WIMError, never a crash. Compiled into
// the WIM module by scripts/fuzz.
#if canImport(Glibc)
import Glibc
#endif

final class FuzzDiscard: BlobSink {
    var bytes = 0
    func beginBlob(_ blob: BlobDescriptor) throws {}
    func blobData(_ data: UnsafeRawBufferPointer) throws { bytes += data.count }
    func endBlob(_ blob: BlobDescriptor) throws {}
}

public func fuzzWIMFile(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // The archive reads a file by path: keep one scratch file in memory (tmpfs) per process.
    let path = "/dev/shm/imprint-fuzz-\(getpid()).wim"
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    var written = 0
    while written < size {
        let n = write(fd, data + written, size - written)
        if n <= 0 { break }
        written += n
    }
    close(fd)
    defer { unlink(path) }
    guard let wim = try? WIMArchive(path: path) else { return 0 }
    for image in 0..<wim.imageCount {
        _ = try? wim.metadata(image: image + 1)
    }
    var reader = BlobReader(archive: wim, threads: 1)
    reader.maxBytesInFlight = 64 << 20
    // Bound the work one input can ask for; huge claimed sizes are rejected by the reader itself.
    let blobs = wim.blobs.values.filter { $0.size < 16 << 20 }
    try? reader.read(Array(blobs), into: FuzzDiscard())
    return 0
}
