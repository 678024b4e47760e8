import TestSupport
import CWimlibReference
import WIM

/// wimlib's own compressor and decompressor, used only by the tests as the reference our
/// decoders must agree with.
enum WimlibReference {
    static func ctype(_ format: CompressionFormat) -> wimlib_compression_type {
        switch format {
        case .none: return WIMLIB_COMPRESSION_TYPE_NONE
        case .xpress: return WIMLIB_COMPRESSION_TYPE_XPRESS
        case .lzx: return WIMLIB_COMPRESSION_TYPE_LZX
        case .lzms: return WIMLIB_COMPRESSION_TYPE_LZMS
        }
    }

    /// Compresses `data` as one chunk, the way wimlib writes a WIM chunk of a resource whose
    /// chunk size is `maxBlockSize`. Returns nil when wimlib would store the chunk uncompressed
    /// (the result would not be smaller).
    static func compress(_ data: [UInt8], format: CompressionFormat, maxBlockSize: Int, level: UInt32 = 0) -> [UInt8]? {
        var compressor: OpaquePointer?
        guard wimlib_create_compressor(ctype(format), maxBlockSize, level, &compressor) == 0, let compressor else {
            fatalError("wimlib_create_compressor(\(format), \(maxBlockSize)) failed")
        }
        defer { wimlib_free_compressor(compressor) }
        var out = [UInt8](repeating: 0, count: max(data.count - 1, 1))
        let n = data.withUnsafeBytes { inBuf in
            out.withUnsafeMutableBytes { outBuf in
                wimlib_compress(inBuf.baseAddress, inBuf.count, outBuf.baseAddress, outBuf.count, compressor)
            }
        }
        if n == 0 { return nil }
        return Array(out[0..<n])
    }

    static func decompress(_ data: [UInt8], format: CompressionFormat, outputSize: Int, maxBlockSize: Int) -> [UInt8]? {
        var decompressor: OpaquePointer?
        guard wimlib_create_decompressor(ctype(format), maxBlockSize, &decompressor) == 0, let decompressor else {
            fatalError("wimlib_create_decompressor(\(format), \(maxBlockSize)) failed")
        }
        defer { wimlib_free_decompressor(decompressor) }
        var out = [UInt8](repeating: 0, count: outputSize)
        let rc = data.withUnsafeBytes { inBuf in
            out.withUnsafeMutableBytes { outBuf in
                wimlib_decompress(inBuf.baseAddress, inBuf.count, outBuf.baseAddress, outBuf.count, decompressor)
            }
        }
        return rc == 0 ? out : nil
    }
}
