import Foundation
import SequenceModel

/// `applyImage` steps that name a library image instead of a file:
///
///     {"type": "applyImage", "image": {"library": "Windows 11 Pro", "version": "latest"}, "target": "windows"}
///
/// `version` is `"latest"` (the newest version not retired; the default) or a number. The server
/// resolves them when it hands a sequence out (at check-in): the step gets the version's URL
/// (`${ServerURL}/content/library/files/<sha256>.wim`), its SHA-256 and image 1, and the
/// deployment records which version it got. Saving a sequence resolves them too, so a name the
/// library lacks is refused then, with the step's path.
enum LibraryReferences {
    struct Reference: Hashable, Sendable {
        var image: String
        /// Nil: the latest.
        var version: Int?
        /// The step's JSON path, for errors.
        var path: String
    }

    struct Unresolvable: Error, CustomStringConvertible {
        var path: String
        var description: String
    }

    /// Every library reference of a sequence, at any depth of groups.
    static func find(inSequence body: String) -> [Reference] {
        guard let root = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)) else { return [] }
        var found: [Reference] = []
        _ = try? rewrite(root) { reference, _ in
            found.append(reference)
            return nil
        }
        return found
    }

    /// The sequence with each reference replaced by what it names in the library (`images`,
    /// by name, read only when the sequence names one: most check-ins need no library), and
    /// the versions used.
    static func resolve(_ body: String, images lookUp: () async throws -> [String: LibraryImage]) async throws
        -> (body: String, used: [(image: String, version: Int)]) {
        guard let root = try? JSONDecoder().decode(JSONValue.self, from: Data(body.utf8)) else { return (body, []) }
        var named = false
        _ = try rewrite(root) { _, _ in
            named = true
            return nil
        }
        guard named else { return (body, []) }
        let images = try await lookUp()
        var used: [(String, Int)] = []
        let (rewritten, changed) = try rewrite(root) { reference, step in
            guard let image = images[reference.image] else {
                throw Unresolvable(path: reference.path + ".image.library",
                                   description: "the library has no image named \"\(reference.image)\"")
            }
            let version: LibraryVersion
            if let number = reference.version {
                guard let named = image.versions.first(where: { $0.version == number }) else {
                    throw Unresolvable(path: reference.path + ".image.version",
                                       description: "the library image \"\(reference.image)\" has no version \(number) (it has "
                                           + image.versions.map { String($0.version) }.joined(separator: ", ") + ")")
                }
                version = named
            } else {
                guard let latest = image.latest else {
                    throw Unresolvable(path: reference.path + ".image.version",
                                       description: "every version of the library image \"\(reference.image)\" is retired: \"latest\" names none")
                }
                version = latest
            }
            used.append((image.name, version.version))
            var fields = step
            fields["image"] = .string("1")
            fields["source"] = .string("${ServerURL}/content/" + version.file)
            fields["sha256"] = .string(version.sha256)
            return fields
        }
        guard changed else { return (body, []) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (String(decoding: try encoder.encode(rewritten), as: UTF8.self), used)
    }

    /// Walks the steps (and groups' steps); `replace` gets each applyImage step naming a
    /// library image and returns its new fields (nil: unchanged).
    private static func rewrite(_ root: JSONValue,
                                _ replace: (Reference, [String: JSONValue]) throws -> [String: JSONValue]?) throws -> (JSONValue, Bool) {
        var changed = false
        func walk(_ steps: [JSONValue], _ path: String) throws -> [JSONValue] {
            try steps.enumerated().map { index, step in
                guard var fields = step.objectValue else { return step }
                let here = "\(path)[\(index)]"
                if let inner = fields["steps"]?.arrayValue {
                    fields["steps"] = .array(try walk(inner, here + ".steps"))
                }
                if fields["type"]?.stringValue == "applyImage", let library = fields["image"]?.objectValue,
                   let name = library["library"]?.stringValue {
                    var version: Int?
                    if let text = library["version"]?.scalarText, text != "latest" {
                        guard let number = Int(text), number > 0 else {
                            throw Unresolvable(path: here + ".image.version", description: "a library version is \"latest\" or a number, not \"\(text)\"")
                        }
                        version = number
                    }
                    if let new = try replace(Reference(image: name, version: version, path: here), fields) {
                        fields = new
                        changed = true
                    }
                }
                return .object(fields)
            }
        }
        guard var top = root.objectValue, let steps = top["steps"]?.arrayValue else { return (root, false) }
        top["steps"] = .array(try walk(steps, "$.steps"))
        return (.object(top), changed)
    }
}
