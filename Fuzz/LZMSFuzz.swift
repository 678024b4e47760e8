// libFuzzer target for the LZMS decoder, compiled into the WIM module by scripts/fuzz (one
// binary for every target). Run alone on a corpus seeded with valid chunks (layout below):
//   .build-fuzz/imprint-fuzz LZMSFuzz -max_total_time=60 corpus/
//
// Input layout: 3 bytes little-endian choose the uncompressed size, 1 + (value mod 2^20), so
// 1 byte to 1 MiB; the rest is the compressed chunk. The output buffer is allocated at exactly
// that size so AddressSanitizer flags any write past it, and libFuzzer's input buffer is
// exactly the input, so any read past it is flagged too.

/// One decoder for the whole run, like a resource reader: cached tables from earlier inputs
/// (other chunk sizes) must never affect a later one.
nonisolated(unsafe) private var fuzzDecoder = LZMSDecompressor()

public func fuzzLZMS(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 3 else { return 0 }
    let sizeField = Int(data[0]) | Int(data[1]) << 8 | Int(data[2]) << 16
    let outputSize = 1 + sizeField % (1 << 20)
    let input = UnsafeRawBufferPointer(start: data + 3, count: size - 3)
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: outputSize, alignment: 1)
    defer { output.deallocate() }
    do {
        try fuzzDecoder.decompress(input, into: output)
    } catch {
        // Rejecting the input is fine; the error must describe a place inside it.
        if error.format != .lzms || error.offset < 0 || error.offset > input.count {
            fatalError("malformed error: \(error)")
        }
    }
    return 0
}
