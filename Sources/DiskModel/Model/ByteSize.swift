import Foundation

/// Sizes as people write them in rules and layouts: `512`, `64GiB`, `500 MB`, `1.5TiB`.
/// Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) of
/// 1000, as disk vendors count; a bare number is bytes.
public enum ByteSize {
    private static let units: [(String, Double)] = [
        ("kib", 1024), ("mib", 1024 * 1024), ("gib", 1024 * 1024 * 1024), ("tib", 1024 * 1024 * 1024 * 1024),
        ("kb", 1e3), ("mb", 1e6), ("gb", 1e9), ("tb", 1e12),
        ("k", 1024), ("m", 1024 * 1024), ("g", 1024 * 1024 * 1024), ("t", 1024 * 1024 * 1024 * 1024),
        ("b", 1),
    ]

    /// Parses a size, or returns nil with no guess when the text is not one.
    public static func parse(_ text: String) -> UInt64? {
        let trimmed = text.trimmingCharacters(in: .whitespaces).lowercased()
        guard !trimmed.isEmpty else { return nil }
        var numberPart = trimmed
        var multiplier = 1.0
        for (suffix, value) in units where trimmed.hasSuffix(suffix) {
            numberPart = String(trimmed.dropLast(suffix.count)).trimmingCharacters(in: .whitespaces)
            multiplier = value
            break
        }
        guard !numberPart.isEmpty, numberPart.allSatisfy({ $0.isNumber || $0 == "." }),
              let number = Double(numberPart), number.isFinite, number >= 0 else { return nil }
        let bytes = (number * multiplier).rounded()
        guard bytes < 1.8e19 else { return nil }
        return UInt64(bytes)
    }

    /// `260 MiB`, `1.5 GiB`, `512 B`: short and exact enough for a technician.
    public static func format(_ bytes: UInt64) -> String {
        let names = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]
        var value = Double(bytes)
        var index = 0
        while value >= 1024, index < names.count - 1 {
            value /= 1024
            index += 1
        }
        if index == 0 { return "\(bytes) B" }
        let rounded = (value * 10).rounded() / 10
        let text = rounded == rounded.rounded() ? String(Int(rounded)) : String(rounded)
        return "\(text) \(names[index])"
    }
}

