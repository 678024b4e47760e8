/// An encoder for one compression format, the writer's counterpart of `ChunkDecompressor`.
/// Instances keep their tables between calls so a thread compressing many chunks allocates
/// once; an instance is not shared between threads (the resource writer keeps one per thread).
///
/// `compress` returns nil when the result would not be smaller than the input: the writer then
/// stores the chunk raw, which readers recognise by its stored size equalling its data size.
public protocol ChunkCompressor {
    var format: CompressionFormat { get }
    /// The largest chunk this encoder takes (the format's limit).
    static var maxChunkSize: Int { get }
    mutating func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]?
}

/// Compression levels in wimlib-imagex's scale: 1...100, 50 by default; lower is faster, higher
/// compresses harder. Each format maps the scale onto its own search settings.
public struct CompressionLevel: Sendable, Equatable, CustomStringConvertible {
    public let value: Int
    public static let `default` = CompressionLevel(50)!
    public init?(_ value: Int) {
        guard (1...100).contains(value) else { return nil }
        self.value = value
    }
    public var description: String { String(value) }
}

/// What to compress with, as wimlib-imagex's `--compress` takes it: `FORMAT[:LEVEL]`
/// (`lzx`, `lzms:80`, `none`), the level 50 when left out.
public struct CompressionChoice: Sendable, Equatable, CustomStringConvertible {
    public var format: CompressionFormat
    public var level: CompressionLevel

    public init(_ format: CompressionFormat, level: CompressionLevel = .default) {
        self.format = format
        self.level = level
    }

    /// Nil for anything else (an unknown format, a level outside 1...100, a level for `none`).
    public init?(parsing text: String) {
        let parts = text.lowercased().split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let format = CompressionFormat(rawValue: String(parts[0])) else { return nil }
        self.format = format
        if parts.count == 2 {
            guard format != .none, let number = Int(parts[1]), let level = CompressionLevel(number) else { return nil }
            self.level = level
        } else {
            level = .default
        }
    }

    public var description: String { format == .none ? "none" : "\(format.rawValue):\(level)" }
}

extension XpressCompressor: ChunkCompressor {
    public var format: CompressionFormat { .xpress }

    /// Levels below 35 parse greedily (wimlib's fast range), the rest lazily.
    public init(level: CompressionLevel) {
        self.init(level: level.value < 35 ? .fast : .normal)
    }
}

/// Makes an encoder for `format` at `level`, for a resource of `chunkSize`-byte chunks (LZX's
/// window depends on it); nil for `.none` and for formats without an encoder yet (callers say
/// which format is missing).
public func makeChunkCompressor(_ format: CompressionFormat, level: CompressionLevel = .default, chunkSize: Int = 32768) -> (any ChunkCompressor)? {
    switch format {
    case .xpress: return XpressCompressor(level: level)
    case .lzx: return LZXCompressor(level: level, chunkSize: min(max(chunkSize, 1), LZXCompressor.maxChunkSize))
    case .lzms: return LZMSCompressor(level: level)
    case .none: return nil
    }
}
