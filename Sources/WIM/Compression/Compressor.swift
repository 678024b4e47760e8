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

extension XpressCompressor: ChunkCompressor {
    public var format: CompressionFormat { .xpress }

    /// Levels below 35 parse greedily (wimlib's fast range), the rest lazily.
    public init(level: CompressionLevel) {
        self.init(level: level.value < 35 ? .fast : .normal)
    }
}

/// Makes an encoder for `format` at `level`; nil for `.none` and for formats without an
/// encoder yet (callers say which format is missing).
public func makeChunkCompressor(_ format: CompressionFormat, level: CompressionLevel = .default) -> (any ChunkCompressor)? {
    switch format {
    case .xpress: return XpressCompressor(level: level)
    case .lzms: return LZMSCompressor(level: level)
    case .none, .lzx: return nil
    }
}
