import Primitives

/// A parsed XML element. WIM XML data is small and simple (elements, attributes, text), so a
/// small parser of our own keeps the agent free of libxml2.
public struct XMLElement: Sendable, Equatable {
    public var name: String
    public var attributes: [(String, String)]
    public var children: [XMLElement]
    public var text: String

    public static func == (a: XMLElement, b: XMLElement) -> Bool {
        a.name == b.name && a.text == b.text && a.children == b.children
            && a.attributes.map(\.0) == b.attributes.map(\.0) && a.attributes.map(\.1) == b.attributes.map(\.1)
    }

    public func attribute(_ key: String) -> String? { attributes.first { $0.0 == key }?.1 }
    public func child(_ name: String) -> XMLElement? { children.first { $0.name == name } }
    public func childText(_ name: String) -> String? { child(name)?.text }
}

public struct XMLSyntaxError: Error, CustomStringConvertible {
    public var offset: Int
    public var reason: String
    public var description: String { "at character \(offset): \(reason)" }
}

/// A strict-enough XML parser: elements, attributes, text, the five predefined entities and
/// numeric character references, comments, processing instructions and CDATA.
public struct XMLParser {
    private let chars: [Unicode.Scalar]
    private var position = 0
    private var depth = 0

    init(_ text: String) { chars = Array(text.unicodeScalars) }

    public static func parse(_ text: String) throws(XMLSyntaxError) -> XMLElement {
        var parser = XMLParser(text)
        parser.skipMisc()
        guard parser.peek() == "<" else { throw parser.fail("expected the root element") }
        let root = try parser.element()
        parser.skipMisc()
        guard parser.position >= parser.chars.count else { throw parser.fail("content after the root element") }
        return root
    }

    private func fail(_ reason: String) -> XMLSyntaxError { XMLSyntaxError(offset: position, reason: reason) }
    private func peek(_ ahead: Int = 0) -> Unicode.Scalar? {
        position + ahead < chars.count ? chars[position + ahead] : nil
    }
    private func starts(with s: String) -> Bool {
        var i = position
        for c in s.unicodeScalars {
            guard i < chars.count, chars[i] == c else { return false }
            i += 1
        }
        return true
    }
    private mutating func skipSpace() {
        while let c = peek(), c == " " || c == "\n" || c == "\r" || c == "\t" { position += 1 }
    }
    private mutating func skip(past terminator: String) throws(XMLSyntaxError) {
        while position < chars.count {
            if starts(with: terminator) { position += terminator.unicodeScalars.count; return }
            position += 1
        }
        throw fail("unterminated construct, expected \(terminator)")
    }
    /// Skips white space, comments, processing instructions and a DOCTYPE outside the root.
    private mutating func skipMisc() {
        while true {
            skipSpace()
            if starts(with: "<?") { try? skip(past: "?>"); continue }
            if starts(with: "<!--") { try? skip(past: "-->"); continue }
            if starts(with: "<!DOCTYPE") { try? skip(past: ">"); continue }
            return
        }
    }
    private mutating func name() throws(XMLSyntaxError) -> String {
        var s = String.UnicodeScalarView()
        while let c = peek(), !(c == " " || c == "\n" || c == "\r" || c == "\t" || c == "/" || c == ">" || c == "=" || c == "<") {
            s.append(c)
            position += 1
        }
        guard !s.isEmpty else { throw fail("expected a name") }
        return String(s)
    }
    private mutating func reference() throws(XMLSyntaxError) -> Unicode.Scalar {
        // Called with `position` at '&'.
        position += 1
        var body = ""
        while let c = peek(), c != ";" {
            body.unicodeScalars.append(c)
            position += 1
            guard body.count < 12 else { throw fail("unterminated character reference") }
        }
        guard peek() == ";" else { throw fail("unterminated character reference") }
        position += 1
        switch body {
        case "lt": return "<"
        case "gt": return ">"
        case "amp": return "&"
        case "quot": return "\""
        case "apos": return "'"
        default:
            var value: UInt32?
            if body.hasPrefix("#x") { value = UInt32(body.dropFirst(2), radix: 16) }
            else if body.hasPrefix("#") { value = UInt32(body.dropFirst(1)) }
            guard let value, let scalar = Unicode.Scalar(value) else { throw fail("unknown entity &\(body);") }
            return scalar
        }
    }
    private mutating func element() throws(XMLSyntaxError) -> XMLElement {
        depth += 1
        defer { depth -= 1 }
        guard depth < 256 else { throw fail("elements nested too deeply") }
        position += 1  // '<'
        let tag = try name()
        var element = XMLElement(name: tag, attributes: [], children: [], text: "")
        while true {
            skipSpace()
            guard let c = peek() else { throw fail("unterminated start tag <\(tag)>") }
            if c == "/" {
                guard peek(1) == ">" else { throw fail("expected /> in <\(tag)>") }
                position += 2
                return element
            }
            if c == ">" { position += 1; break }
            let key = try name()
            skipSpace()
            guard peek() == "=" else { throw fail("attribute \(key) of <\(tag)> has no value") }
            position += 1
            skipSpace()
            guard let quote = peek(), quote == "\"" || quote == "'" else { throw fail("attribute \(key) value is not quoted") }
            position += 1
            var value = String.UnicodeScalarView()
            while let v = peek(), v != quote {
                if v == "&" { value.append(try reference()) } else { value.append(v); position += 1 }
            }
            guard peek() == quote else { throw fail("unterminated attribute value") }
            position += 1
            element.attributes.append((key, String(value)))
        }
        var text = String.UnicodeScalarView()
        while true {
            guard let c = peek() else { throw fail("element <\(tag)> is not closed") }
            if c == "<" {
                if starts(with: "</") {
                    position += 2
                    let closing = try name()
                    guard closing == tag else { throw fail("</\(closing)> closes <\(tag)>") }
                    skipSpace()
                    guard peek() == ">" else { throw fail("malformed end tag </\(closing)") }
                    position += 1
                    element.text = String(text).trimmingWhitespace()
                    return element
                }
                if starts(with: "<!--") { try skip(past: "-->"); continue }
                if starts(with: "<?") { try skip(past: "?>"); continue }
                if starts(with: "<![CDATA[") {
                    position += 9
                    while position < chars.count, !starts(with: "]]>") { text.append(chars[position]); position += 1 }
                    try skip(past: "]]>")
                    continue
                }
                element.children.append(try self.element())
            } else if c == "&" {
                text.append(try reference())
            } else {
                text.append(c)
                position += 1
            }
        }
    }
}

extension String {
    func trimmingWhitespace() -> String {
        var scalars = Substring(self).unicodeScalars
        while let f = scalars.first, f == " " || f == "\n" || f == "\r" || f == "\t" { scalars.removeFirst() }
        while let l = scalars.last, l == " " || l == "\n" || l == "\r" || l == "\t" { scalars.removeLast() }
        return String(scalars)
    }
}

/// The WIM's XML data: per-image names, descriptions, counts, sizes and times.
public struct WIMXMLInfo: Sendable {
    public var root: XMLElement
    public var totalBytes: UInt64?

    public struct Image: Sendable {
        public var index: Int
        public var element: XMLElement
        public var name: String? { element.childText("NAME") }
        public var description: String? { element.childText("DESCRIPTION") }
        public var displayName: String? { element.childText("DISPLAYNAME") }
        public var displayDescription: String? { element.childText("DISPLAYDESCRIPTION") }
        public var flags: String? { element.childText("FLAGS") }
        public var directoryCount: UInt64? { element.childText("DIRCOUNT").flatMap { UInt64($0) } }
        public var fileCount: UInt64? { element.childText("FILECOUNT").flatMap { UInt64($0) } }
        public var totalBytes: UInt64? { element.childText("TOTALBYTES").flatMap { UInt64($0) } }
        public var hardLinkBytes: UInt64? { element.childText("HARDLINKBYTES").flatMap { UInt64($0) } }
        public var creationTime: UInt64? { Self.filetime(element.child("CREATIONTIME")) }
        public var lastModificationTime: UInt64? { Self.filetime(element.child("LASTMODIFICATIONTIME")) }

        static func filetime(_ e: XMLElement?) -> UInt64? {
            guard let e, let hi = e.childText("HIGHPART"), let lo = e.childText("LOWPART") else { return nil }
            func hex(_ s: String) -> UInt64? { UInt64(s.hasPrefix("0x") || s.hasPrefix("0X") ? String(s.dropFirst(2)) : s, radix: 16) }
            guard let h = hex(hi), let l = hex(lo) else { return nil }
            return h << 32 | l
        }

        /// Every simple property as a flat path → value list (e.g. WINDOWS/VERSION/BUILD), the way
        /// `wimlib-imagex info` shows them.
        public var properties: [(String, String)] {
            var out: [(String, String)] = []
            func walk(_ e: XMLElement, _ prefix: String) {
                for child in e.children {
                    let key = prefix.isEmpty ? child.name : prefix + "/" + child.name
                    if child.children.isEmpty { out.append((key, child.text)) } else { walk(child, key) }
                }
            }
            walk(element, "")
            return out
        }
    }

    public var images: [Image]

    /// The image a selector names: a 1-based index, or an image name (exact, then ignoring
    /// case, as DISM matches /Name).
    public func imageIndex(_ selector: String, imageCount: Int) -> Int? {
        if let n = Int(selector) { return n >= 1 && n <= imageCount ? n : nil }
        let match = images.first { $0.name == selector } ?? images.first { $0.name?.lowercased() == selector.lowercased() }
        guard let index = match?.index, index >= 1, index <= imageCount else { return nil }
        return index
    }

    public static let empty = WIMXMLInfo(root: XMLElement(name: "WIM", attributes: [], children: [], text: ""), totalBytes: nil, images: [])

    init(root: XMLElement, totalBytes: UInt64?, images: [Image]) {
        self.root = root
        self.totalBytes = totalBytes
        self.images = images
    }

    public init(utf16leBytes bytes: [UInt8], path: String) throws(WIMError) {
        var body = bytes[...]
        if body.count >= 2, body[body.startIndex] == 0xFF, body[body.startIndex + 1] == 0xFE { body = body.dropFirst(2) }
        guard body.count % 2 == 0 else { throw .invalidXML(path: path, reason: "odd number of bytes in UTF-16 text") }
        let text = UTF16LE.decode(body)
        let root: XMLElement
        do { root = try XMLParser.parse(text) } catch { throw .invalidXML(path: path, reason: error.description) }
        guard root.name == "WIM" else { throw .invalidXML(path: path, reason: "root element is <\(root.name)>, not <WIM>") }
        self.root = root
        totalBytes = root.childText("TOTALBYTES").flatMap { UInt64($0) }
        var images: [Image] = []
        for child in root.children where child.name == "IMAGE" {
            let index = child.attribute("INDEX").flatMap { Int($0) } ?? images.count + 1
            images.append(Image(index: index, element: child))
        }
        self.images = images.sorted { $0.index < $1.index }
    }
}
