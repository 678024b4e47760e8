import Failures

/// The compression formats a WIM resource can use, as named by the header flags and the
/// solid-resource headers.
public enum CompressionFormat: String, Sendable, CustomStringConvertible {
    case none
    case xpress
    case lzx
    case lzms

    public var description: String {
        switch self {
        case .none: return "None"
        case .xpress: return "XPRESS"
        case .lzx: return "LZX"
        case .lzms: return "LZMS"
        }
    }
}

/// Why a compressed chunk could not be decoded. `offset` is the byte offset inside the chunk's
/// compressed data where the decoder noticed the problem; the resource reader adds the chunk's
/// position in the file so a technician sees a file offset.
public struct DecompressionError: Error, Sendable, Equatable, CustomStringConvertible {
    public var format: CompressionFormat
    public var reason: String
    public var offset: Int

    public init(_ format: CompressionFormat, _ reason: String, offset: Int) {
        self.format = format
        self.reason = reason
        self.offset = offset
    }

    public var description: String {
        "corrupt \(format) data at byte \(offset) of the chunk: \(reason)"
    }
}

/// A decoder for one compression format. Instances keep their tables between calls so a thread
/// decoding many chunks allocates once; an instance is not shared between threads.
///
/// `decompress` must fill all of `output` (the caller knows each chunk's uncompressed size from
/// the resource's chunk table) and throw `DecompressionError` for any input that does not decode
/// to exactly that many bytes. It must never read outside `input` or write outside `output`,
/// whatever the input holds.
public protocol ChunkDecompressor {
    var format: CompressionFormat { get }
    mutating func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) throws(DecompressionError)
}

extension ChunkDecompressor {
    /// Safe entry point for callers outside the hot path (tests, tools).
    public mutating func decompress(_ input: [UInt8], outputSize: Int) throws(DecompressionError) -> [UInt8] {
        var output = [UInt8](repeating: 0, count: outputSize)
        var failure: DecompressionError?
        input.withUnsafeBytes { inBuf in
            output.withUnsafeMutableBytes { outBuf in
                do throws(DecompressionError) { try self.decompress(inBuf, into: outBuf) } catch { failure = error }
            }
        }
        if let failure { throw failure }
        return output
    }
}

extension DecompressionError: ClassifiedError {
    public var failureKind: FailureKind { .badInput }
}
