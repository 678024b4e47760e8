// libFuzzer target for the XPRESS chunk compressor, compiled into the WIM module by scripts/fuzz
// (one binary for every target):
//
//   .build-fuzz/imprint-fuzz XpressRoundTripFuzz -max_total_time=60 corpus/
//
// Input layout: the first byte picks the level (even: normal, odd: fast), the rest (up to 65536
// bytes, a WIM XPRESS chunk at most) is the chunk. The chunk is compressed and, when the
// compressor finds it worth storing compressed, decompressed again with our decoder, which must
// accept it and give back exactly the chunk. The stream is checked even when it does not shrink
// (`compressAlways`), so tiny and incompressible chunks exercise the encoder too.

/// Reused between inputs like a WIM writer reuses its compressor, so stale hash chains and
/// tables from an earlier input are exercised too. libFuzzer calls the target from one thread.
nonisolated(unsafe) private var roundTripCompressors = [XpressCompressor(level: .normal), XpressCompressor(level: .fast)]
nonisolated(unsafe) private var roundTripDecoder = XpressDecompressor()

public func fuzzXpressRoundTrip(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let which = Int(data[0] & 1)
    let chunk = UnsafeRawBufferPointer(start: data + 1, count: min(size - 1, 65536))
    guard chunk.count > 0 else { return 0 }

    let always = roundTripCompressors[which].compressAlways(chunk)
    let compressed = roundTripCompressors[which].compress(chunk)
    checkCompressorRoundTrip(chunk, always: always, compressed: compressed) { try roundTripDecoder.decompress($0, into: $1) }
    return 0
}

/// The round trip each compressor target checks (this file's, LZXRoundTripFuzz's and
/// LZMSRoundTripFuzz's, all compiled into the WIM module): the stream `compressAlways` gave
/// decodes to exactly the chunk, and `compress` (given the same chunk next) returns the same
/// stream when it shrinks and nil when it does not. The output buffer has the chunk's exact
/// size, so the sanitizer reports any overrun by the decoder.
func checkCompressorRoundTrip(_ chunk: UnsafeRawBufferPointer, always: [UInt8], compressed: [UInt8]?,
                              decode: (UnsafeRawBufferPointer, UnsafeMutableRawBufferPointer) throws -> Void) {
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk.count, alignment: 1)
    defer { output.deallocate() }
    do {
        try always.withUnsafeBytes { try decode($0, output) }
    } catch {
        fatalError("compressAlways: our decoder rejects the compressor's output for a \(chunk.count)-byte chunk: \(error)")
    }
    if !output.elementsEqual(chunk) {
        fatalError("compressAlways: the round trip changes a \(chunk.count)-byte chunk")
    }
    if let compressed {
        if compressed.count >= chunk.count {
            fatalError("compress returned \(compressed.count) bytes for a \(chunk.count)-byte chunk")
        }
        if compressed != always { fatalError("compress and compressAlways disagree") }
    } else if always.count < chunk.count {
        fatalError("compress gave up on a chunk that shrinks to \(always.count) of \(chunk.count) bytes")
    }
}
