// libFuzzer target for the XPRESS chunk decoder, compiled into the WIM module by scripts/fuzz
// (one binary for every target):
//
//   .build-fuzz/imprint-fuzz XpressFuzz -max_total_time=60 corpus/
//
// Input layout: two little-endian bytes give the output size minus one (1...65536, every WIM
// XPRESS chunk size), the rest is the compressed chunk. The decoder must return or throw; the
// sanitizer catches any read or write outside the buffers, which are allocated at their exact
// sizes so that even a one-byte overrun is reported.

/// Reused between inputs like a resource reader reuses its decoder, so stale table contents
/// from an earlier input are exercised too. libFuzzer calls the target from one thread.
nonisolated(unsafe) private var decoder = XpressDecompressor()

public func fuzzXpress(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 2 else { return 0 }
    let outputSize = (Int(data[0]) | Int(data[1]) << 8) + 1
    let input = UnsafeRawBufferPointer(start: data + 2, count: size - 2)
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: outputSize, alignment: 1)
    defer { output.deallocate() }
    do throws(DecompressionError) {
        try decoder.decompress(input, into: output)
    } catch {
        // A corrupt-data error must name the format and a position inside the input.
        if error.format != .xpress || error.offset < 0 || error.offset > input.count {
            fatalError("malformed error: \(error)")
        }
    }
    return 0
}
