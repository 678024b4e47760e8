/// Edits of an image's directory tree for `imprint wim update`: add (graft a captured tree or
/// file at a path, merging folders into folders and replacing files by files; a folder and a
/// file never replace one another, as in wimlib-imagex update), delete and
/// rename, with wimlib-imagex update's rules. Paths use "/" or "\" and match names exactly
/// first, then ignoring case, as Windows would. Removed entries are only unlinked from their
/// parent; `compacted()` drops them before the tree is written.
extension ImageTree {
    static func components(_ path: String) -> [String] {
        path.split(whereSeparator: { $0 == "/" || $0 == "\\" }).map(String.init)
    }

    func child(of parent: Int, named name: String) -> Int? {
        let children = entries[parent].children
        return children.first { entries[$0].name == name } ?? children.first { entries[$0].name.lowercased() == name.lowercased() }
    }

    /// The entry at `path` ("/" is the root), or nil.
    public func lookup(_ path: String) -> Int? {
        var current = 0
        for component in Self.components(path) {
            guard entries[current].isDirectory, let next = child(of: current, named: component) else { return nil }
            current = next
        }
        return current
    }

    /// The parent folder of `path` and the last name; the parent must exist unless
    /// `createParents`, which makes the missing folders.
    mutating func parentAndName(_ path: String, createParents: Bool) throws -> (parent: Int, name: String) {
        var parts = Self.components(path)
        guard let name = parts.popLast() else { throw WIMEditError.badCommand("\"\(path)\" names the image's root folder") }
        var current = 0
        for (depth, component) in parts.enumerated() {
            if let next = child(of: current, named: component) {
                guard entries[next].isDirectory else {
                    throw WIMEditError.badCommand("\"/\(parts[0...depth].joined(separator: "/"))\" in the image is not a folder")
                }
                current = next
            } else if createParents {
                var folder = Entry(name: component, attributes: .directory)
                let now = WIMWriter.currentFiletime()
                (folder.creationTime, folder.lastAccessTime, folder.lastWriteTime) = (now, now, now)
                entries.append(folder)
                entries[current].children.append(entries.count - 1)
                current = entries.count - 1
            } else {
                throw WIMEditError.badCommand("folder \"/\(parts[0...depth].joined(separator: "/"))\" is not in the image")
            }
        }
        return (current, name)
    }

    /// Deletes the entry at `path`: a folder only with `recursive`; a missing path is an error
    /// unless `force`.
    public mutating func delete(_ path: String, recursive: Bool, force: Bool) throws {
        guard let target = lookup(path) else {
            if force { return }
            throw WIMEditError.badCommand("delete \(path): not in the image (use --force to ignore)")
        }
        guard target != 0 else { throw WIMEditError.badCommand("delete \(path): the root folder cannot be deleted") }
        if entries[target].isDirectory && !recursive {
            throw WIMEditError.badCommand("delete \(path): it is a folder (use --recursive to delete it with its contents)")
        }
        for i in entries.indices { entries[i].children.removeAll { $0 == target } }
    }

    /// Renames (moves) `old` to `new`, whose parent folder must exist and which must not exist
    /// (unless it is the same entry with other letter case).
    public mutating func rename(_ old: String, to new: String) throws {
        guard let source = lookup(old), source != 0 else { throw WIMEditError.badCommand("rename \(old): not in the image") }
        let (parent, name) = try parentAndName(new, createParents: false)
        if let existing = child(of: parent, named: name), existing != source || entries[existing].name == name {
            throw WIMEditError.badCommand("rename \(old) \(new): \(new) exists already")
        }
        // A folder cannot move into itself.
        var ancestor = parent
        var seen = 0
        while ancestor != 0, seen < entries.count {
            if ancestor == source { throw WIMEditError.badCommand("rename \(old) \(new): a folder cannot move into itself") }
            guard let up = entries.indices.first(where: { entries[$0].children.contains(ancestor) }) else { break }
            ancestor = up
            seen += 1
        }
        for i in entries.indices { entries[i].children.removeAll { $0 == source } }
        entries[source].name = name
        entries[source].shortName = ""
        entries[parent].children.append(source)
    }

    /// Puts `tree` (entry 0 its root) at `path`: a folder onto an existing folder merges into
    /// it (its entries replace same-named files, folders merge), anything else replaces what
    /// is there. Missing parent folders are made. Security descriptors and hard-link groups of
    /// `tree` are renumbered into this tree's.
    public mutating func graft(_ tree: ImageTree, at path: String) throws {
        var descriptorIDs: [Int32: Int32] = [:]
        for (i, descriptor) in tree.securityDescriptors.enumerated() {
            if let existing = securityDescriptors.firstIndex(of: descriptor) {
                descriptorIDs[Int32(i)] = Int32(existing)
            } else {
                securityDescriptors.append(descriptor)
                descriptorIDs[Int32(i)] = Int32(securityDescriptors.count - 1)
            }
        }
        let groupBase = (entries.map(\.hardLinkGroup).max() ?? 0) + 1
        func place(_ sourceIndex: Int, into parent: Int, name: String) throws {
            let incoming = tree.entries[sourceIndex]
            if let existing = child(of: parent, named: name) {
                if entries[existing].isDirectory && incoming.isDirectory {
                    for c in incoming.children { try place(c, into: existing, name: tree.entries[c].name) }
                    return
                }
                // As wimlib-imagex update: a folder and a file never replace one another.
                guard entries[existing].isDirectory == incoming.isDirectory else {
                    let what = entries[existing].isDirectory ? "a folder, which a file cannot replace" : "a file, which a folder cannot replace"
                    throw WIMEditError.badCommand("add: \(pathOf(parent))/\(entries[existing].name) in the image is \(what)")
                }
                entries[parent].children.removeAll { $0 == existing }
            }
            var entry = incoming
            entry.name = name
            entry.children = []
            entry.securityID = incoming.securityID >= 0 ? descriptorIDs[incoming.securityID] ?? -1 : -1
            if incoming.hardLinkGroup != 0 { entry.hardLinkGroup = incoming.hardLinkGroup + groupBase }
            entries.append(entry)
            let index = entries.count - 1
            entries[parent].children.append(index)
            for c in incoming.children { try place(c, into: index, name: tree.entries[c].name) }
        }
        if Self.components(path).isEmpty {
            guard tree.entries[0].isDirectory else { throw WIMEditError.badCommand("add: only a folder can be added at the image's root") }
            for c in tree.entries[0].children { try place(c, into: 0, name: tree.entries[c].name) }
            return
        }
        let (parent, name) = try parentAndName(path, createParents: true)
        try place(0, into: parent, name: name)
    }

    /// The path of a folder entry, for messages ("" for the root).
    func pathOf(_ index: Int) -> String {
        var parts: [String] = []
        var current = index
        while current != 0, parts.count < entries.count {
            parts.append(entries[current].name)
            guard let up = entries.indices.first(where: { entries[$0].children.contains(current) }) else { break }
            current = up
        }
        return parts.isEmpty ? "" : "/" + parts.reversed().joined(separator: "/")
    }

    /// The tree without entries no folder lists any more, breadth first from the root.
    public func compacted() -> ImageTree {
        var order = [0]
        var newIndex = [0: 0]
        var next = 0
        while next < order.count {
            for c in entries[order[next]].children where newIndex[c] == nil {
                newIndex[c] = order.count
                order.append(c)
            }
            next += 1
        }
        var result = ImageTree(entries: [], securityDescriptors: securityDescriptors)
        result.entries = order.map { old in
            var entry = entries[old]
            entry.children = entry.children.compactMap { newIndex[$0] }
            return entry
        }
        return result
    }
}
