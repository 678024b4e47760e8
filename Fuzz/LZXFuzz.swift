// libFuzzer entry point for the LZX chunk decoder, compiled into the WIM module by scripts/fuzz
// (one binary for every target: `.build-fuzz/imprint-fuzz LZXFuzz corpus/`).
//
// Input layout: byte 0 picks the window order (15 + byte % 7), bytes 1...3 (little endian) the
// output size (modulo the chunk size, plus 1), the rest is the compressed chunk. Seeds are valid
// chunks with such a prefix, so mutations explore near-valid streams as well as garbage.

/// One decoder per window order, reused across inputs like a reader thread reuses its decoder.
nonisolated(unsafe) private var decoders: [LZXDecompressor?] = Array(repeating: nil, count: 7)

public func fuzzLZX(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 4 else { return 0 }
    let orderIndex = Int(data[0] % 7)
    let chunkSize = 1 << (15 + orderIndex)
    let requested = Int(data[1]) | Int(data[2]) << 8 | Int(data[3]) << 16
    let outputSize = requested % chunkSize + 1
    if decoders[orderIndex] == nil {
        decoders[orderIndex] = try? LZXDecompressor(maxChunkSize: chunkSize)
    }
    guard var decoder = decoders[orderIndex] else { return 0 }
    decoders[orderIndex] = nil  // keep the tables uniquely referenced while decoding
    // Exactly sized allocations, so that AddressSanitizer reports any access past either end.
    let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: size - 4, alignment: 1)
    defer { payload.deallocate() }
    if size > 4 { payload.copyMemory(from: UnsafeRawBufferPointer(start: data + 4, count: size - 4)) }
    let output = UnsafeMutableRawBufferPointer.allocate(byteCount: outputSize, alignment: 1)
    defer { output.deallocate() }
    do {
        try decoder.decompress(UnsafeRawBufferPointer(payload), into: output)
    } catch {
        // Rejecting corrupt input is the expected outcome for most inputs.
    }
    decoders[orderIndex] = decoder
    return 0
}
