// libFuzzer target for the LZX chunk compressor, compiled into the WIM module by scripts/fuzz
// (one binary for every target):
//
//   .build-fuzz/imprint-fuzz LZXRoundTripFuzz -max_total_time=60 corpus/
//
// Input layout: the first byte picks the level (bit 0: fast or normal) and the resource's chunk
// size (bits 1-2: 32 KiB, 64 KiB, 128 KiB, 2 MiB, which fixes the LZX window); the rest is the
// chunk (cut to the chunk size). The chunk is compressed and decompressed again with our decoder,
// which must accept it and give back exactly the chunk. The stream is checked even when it does
// not shrink (`compressAlways`), so tiny and incompressible chunks exercise the encoder too.

private let roundTripChunkSizes = [32768, 65536, 131_072, 2_097_152]

/// Reused between inputs like a WIM writer reuses its compressor, so stale hash chains and
/// tables from an earlier input are exercised too. libFuzzer calls the target from one thread.
nonisolated(unsafe) private var lzxRoundTripCompressors: [LZXCompressor] = roundTripChunkSizes.flatMap { size in
    [LZXCompressor(chunkSize: size, level: .normal), LZXCompressor(chunkSize: size, level: .fast)]
}
nonisolated(unsafe) private var lzxRoundTripDecoders: [LZXDecompressor] = roundTripChunkSizes.map { size in
    // The sizes above are all valid LZX window sizes.
    try! LZXDecompressor(maxChunkSize: size)
}

public func fuzzLZXRoundTrip(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let sizeIndex = Int((data[0] >> 1) & 3)
    let which = sizeIndex * 2 + Int(data[0] & 1)
    let chunk = UnsafeRawBufferPointer(start: data + 1, count: min(size - 1, roundTripChunkSizes[sizeIndex]))
    guard chunk.count > 0 else { return 0 }

    let always = lzxRoundTripCompressors[which].compressAlways(chunk)
    let compressed = lzxRoundTripCompressors[which].compress(chunk)
    checkCompressorRoundTrip(chunk, always: always, compressed: compressed) { try lzxRoundTripDecoders[sizeIndex].decompress($0, into: $1) }
    return 0
}
