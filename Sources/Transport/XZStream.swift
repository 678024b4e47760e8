import Failures
import CLZMA

/// Decodes an .xz stream (or several concatenated, as `xz` and `pixz` write) piece by piece, so
/// a disk image or a driver bundle is decompressed while it downloads, never held whole.
public final class XZDecoder {
    public enum Failure: Error, CustomStringConvertible, Sendable, Equatable {
        /// liblzma rejected the data; `offset` counts compressed bytes read so far.
        case corrupt(offset: UInt64, reason: String)
        /// The input ended before the end of the xz stream.
        case truncated(offset: UInt64)
        /// Decoding needs more memory than the caller allows (an xz file's dictionary size
        /// decides it; a hostile one can ask for gigabytes of a boot environment's RAM).
        case memoryLimit(needed: UInt64, limit: UInt64)

        public var description: String {
            switch self {
            case let .corrupt(offset, reason): return "xz data is corrupt near compressed byte \(offset): \(reason)"
            case let .truncated(offset): return "xz data ends early, after \(offset) compressed bytes"
            case let .memoryLimit(needed, limit):
                return "the xz stream needs \(mebibytes(needed)) MiB of memory to decompress, more than the limit of \(mebibytes(limit)) MiB "
                    + "(recompress it with a smaller dictionary, e.g. xz -6)"
            }
        }
    }

    private var stream = lzma_stream()
    private var output = [UInt8](repeating: 0, count: 1 << 20)
    private var finished = false
    public private(set) var compressedBytes: UInt64 = 0
    public private(set) var decodedBytes: UInt64 = 0

    /// What decoding may use unless the caller says otherwise: `xz -9` needs 65 MiB, so this
    /// leaves room for every preset and then some, but not for an image that asks for gigabytes.
    public static let defaultMemoryLimit: UInt64 = 256 << 20

    public let memoryLimit: UInt64

    public init(memoryLimit: UInt64 = XZDecoder.defaultMemoryLimit) throws(Failure) {
        self.memoryLimit = memoryLimit
        let result = lzma_stream_decoder(&stream, max(1, memoryLimit), imprint_lzma_concatenated)
        guard result == LZMA_OK else { throw Failure.corrupt(offset: 0, reason: Self.reason(result)) }
    }

    deinit { lzma_end(&stream) }

    /// Feeds compressed bytes; `sink` receives each decoded piece in order.
    public func decode(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try run(input, action: LZMA_RUN, sink: sink)
    }

    /// Ends the input; throws when the stream was not complete.
    public func finish(sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        try run(UnsafeRawBufferPointer(start: nil, count: 0), action: LZMA_FINISH, sink: sink)
        guard finished else { throw Failure.truncated(offset: compressedBytes) }
    }

    private func run(_ input: UnsafeRawBufferPointer, action: lzma_action, sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        stream.next_in = input.baseAddress?.assumingMemoryBound(to: UInt8.self)
        stream.avail_in = input.count
        repeat {
            let (result, produced) = output.withUnsafeMutableBufferPointer { buffer -> (lzma_ret, Int) in
                stream.next_out = buffer.baseAddress
                stream.avail_out = buffer.count
                let before = stream.total_in
                let result = lzma_code(&stream, action)
                compressedBytes += stream.total_in - before
                return (result, buffer.count - stream.avail_out)
            }
            if produced > 0 {
                decodedBytes += UInt64(produced)
                try output.withUnsafeBytes { try sink(UnsafeRawBufferPointer(rebasing: $0[0..<produced])) }
            }
            switch result {
            case LZMA_OK: continue
            case LZMA_STREAM_END:
                finished = true
                return
            case LZMA_BUF_ERROR where action == LZMA_FINISH:
                throw Failure.truncated(offset: compressedBytes)
            case LZMA_MEMLIMIT_ERROR:
                throw Failure.memoryLimit(needed: lzma_memusage(&stream), limit: memoryLimit)
            default:
                throw Failure.corrupt(offset: compressedBytes, reason: Self.reason(result))
            }
        } while stream.avail_in > 0 || stream.avail_out == 0 || (action == LZMA_FINISH && !finished)
    }

    private static func reason(_ result: lzma_ret) -> String {
        switch result {
        case LZMA_MEM_ERROR: return "out of memory"
        case LZMA_FORMAT_ERROR: return "not xz data"
        case LZMA_OPTIONS_ERROR: return "unsupported options"
        case LZMA_DATA_ERROR: return "corrupt data"
        case LZMA_BUF_ERROR: return "unexpected end of data"
        case LZMA_UNSUPPORTED_CHECK: return "unsupported integrity check"
        default: return "liblzma error \(result.rawValue)"
        }
    }
}

/// Rounded up, so a need just over the limit never reads as equal to it.
private func mebibytes(_ bytes: UInt64) -> UInt64 { (bytes + (1 << 20) - 1) >> 20 }

extension XZDecoder.Failure: ClassifiedError {
    public var failureKind: FailureKind {
        switch self {
        case .corrupt, .truncated: return .badInput
        // The data may be fine; this machine will not spend that much memory on it.
        case .memoryLimit: return .refused
        }
    }
}
