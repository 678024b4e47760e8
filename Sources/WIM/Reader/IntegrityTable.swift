import Digests
import Primitives

/// The optional integrity table: SHA-1s of fixed-size chunks of the file from the end of the
/// header to the end of the blob table, written by `wimlib-imagex capture --check` and DISM.
public enum IntegrityTable {
    /// Checks every chunk; returns the number of chunks checked, or nil when there is no table.
    public static func verify(_ wim: WIMArchive, progress: (UInt64, UInt64) -> Void = { _, _ in }) throws(WIMError) -> Int? {
        let header = wim.header
        guard !header.integrityTable.isEmpty, header.integrityTable.sizeInWIM > 0 else { return nil }
        let file = wim.parts[0]
        let resource = try BlobTableContents.plainResource(header.integrityTable, header: header, file: file, partIndex: 0, entry: -1, entryOffset: 124)
        let table = try WIMArchive.readWhole(resource, from: file, what: "integrity table", limit: 1 << 28)
        guard table.count >= 12 else {
            throw .invalidResource(path: file.path, offset: resource.offset, reason: "integrity table is only \(table.count) bytes")
        }
        let size = Int(table.le32(0)), count = Int(table.le32(4)), chunkSize = UInt64(table.le32(8))
        guard size <= table.count, count <= (table.count - 12) / 20, chunkSize > 0 else {
            throw .invalidResource(path: file.path, offset: resource.offset, reason: "integrity table header (size \(size), \(count) entries, chunk size \(chunkSize)) is inconsistent")
        }
        let start = UInt64(WIMHeader.diskSize)
        let end = header.blobTable.offset + header.blobTable.sizeInWIM
        guard end >= start, end <= file.size else {
            throw .invalidResource(path: file.path, offset: resource.offset, reason: "the checked range ends past the file")
        }
        let expectedCount = (end - start + chunkSize - 1) / chunkSize
        guard UInt64(count) == expectedCount else {
            throw .invalidResource(path: file.path, offset: resource.offset,
                                   reason: "integrity table has \(count) entries, but \(expectedCount) chunks of \(chunkSize) bytes cover the file")
        }
        var position = start
        var buffer = [UInt8]()
        for i in 0..<count {
            let length = Int(min(chunkSize, end - position))
            buffer = try file.read(count: length, at: position, what: "integrity-checked data")
            let actual = SHA1Hasher.digest(buffer)
            let expected = table.sha1(at: 12 + 20 * i)
            guard actual == expected else {
                throw .invalidResource(path: file.path, offset: position,
                                       reason: "integrity check failed for bytes \(position)..<\(position + UInt64(length)) (chunk \(i)): SHA-1 is \(actual), the table says \(expected)")
            }
            position += UInt64(length)
            progress(position - start, end - start)
        }
        return count
    }
}
