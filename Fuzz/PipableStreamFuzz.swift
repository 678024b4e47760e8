// Fuzz target: a pipable WIM read as a stream (what the agent gets over HTTP), decoded on two
// threads (PipableStreamDecoding.swift): the header, the XML, image 1's metadata, then every
// blob it names. Any input must end in a clean error, never a crash or a hang (a thread left
// waiting would time the target out). Compiled into the WIM module by scripts/fuzz.
import Digests
#if canImport(Glibc)
import Glibc
#endif

public func fuzzPipableStream(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    // The stream reads a descriptor: a pipe would need a writer thread; a tmpfs file reads alike.
    let path = "/dev/shm/imprint-fuzz-stream-\(getpid()).wim"
    let fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
    guard fd >= 0 else { return 0 }
    defer {
        close(fd)
        unlink(path)
    }
    var written = 0
    while written < size {
        let n = write(fd, data + written, size - written)
        if n <= 0 { return 0 }
        written += n
    }
    lseek(fd, 0, SEEK_SET)
    guard let stream = try? PipableStream(descriptor: fd, name: "fuzz input"),
          let metadata = try? stream.readMetadata(image: 1) else { return 0 }
    var needed: [SHA1Digest: UInt64] = [:]
    for entry in metadata.entries where !entry.dataHash.isZero { needed[entry.dataHash] = 1 }
    try? stream.readBlobs(needed, into: FuzzDiscard(), threads: 2)
    return 0
}
