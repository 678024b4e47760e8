// libFuzzer target for the LZMS chunk compressor, compiled into the WIM module by scripts/fuzz
// (one binary for every target):
//
//   .build-fuzz/imprint-fuzz LZMSRoundTripFuzz -max_total_time=60 corpus/
//
// Input layout: the first byte picks the level (even: normal, odd: fast), the rest (up to
// 256 KiB; libFuzzer's -max_len bounds it anyway) is the chunk. The chunk is compressed and
// decompressed again with our decoder, which must accept the stream and give back exactly the
// chunk. The stream is checked even when it does not shrink (`compressAlways`), so tiny and
// incompressible chunks exercise the encoder too.

/// Reused between inputs like a WIM writer reuses its compressor, so stale hash chains and
/// x86 filter tables from an earlier input are exercised too. libFuzzer calls the target from
/// one thread.
nonisolated(unsafe) private var lzmsRoundTripCompressors = [LZMSCompressor(level: .normal), LZMSCompressor(level: .fast)]
nonisolated(unsafe) private var lzmsRoundTripDecoder = LZMSDecompressor()

public func fuzzLZMSRoundTrip(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let which = Int(data[0] & 1)
    let chunk = UnsafeRawBufferPointer(start: data + 1, count: min(size - 1, 1 << 18))
    guard chunk.count > 0 else { return 0 }

    let always = lzmsRoundTripCompressors[which].compressAlways(chunk)
    let compressed = lzmsRoundTripCompressors[which].compress(chunk)
    checkCompressorRoundTrip(chunk, always: always, compressed: compressed) { try lzmsRoundTripDecoder.decompress($0, into: $1) }
    return 0
}
