import SigiloCLI
import SigiloCrypto

/// Each message's encoder embedding (the centred feature vector a model of
/// `encoder` features reads), computed once and kept sealed beside the
/// message. Rows are keyed by the encoder's digest: another encoder's
/// embeddings are worthless and are deleted when a new one takes over.
/// Deleting a message deletes its embeddings (a trigger, schema 7), so
/// erasure and withdrawn consent reach them by the same statements.
extension TenantStore {
    /// Binds a sealed embedding to its message and encoder: it cannot be moved to another.
    static func embeddingContext(message: [UInt8], encoder: [UInt8]) -> [UInt8] {
        Array("embedding:".utf8) + encoder + message
    }

    /// The stored embeddings of `messages` made by `encoder` (nil where none is kept), in order.
    func embeddings(of messages: [[UInt8]], encoder: [UInt8]) throws -> [[Float]?] {
        try messages.map { message in
            var sealed: [UInt8]?
            try database.run("SELECT sealed FROM embeddings WHERE message = ? AND encoder = ?", [.blob(message), .blob(encoder)]) { sealed = $0.blob(0) }
            guard let sealed else { return nil }
            let plain: [UInt8]
            do { plain = try cipher.open(sealed, context: Self.embeddingContext(message: message, encoder: encoder)) } catch {
                throw CLIError(.dataError, "a stored embedding failed authentication: the store is corrupted or was tampered with")
            }
            guard plain.count % 4 == 0 else { throw CLIError(.dataError, "a stored embedding has \(plain.count) bytes, not a multiple of 4: corrupted") }
            return stride(from: 0, to: plain.count, by: 4).map { i in
                Float(bitPattern: UInt32(plain[i]) | UInt32(plain[i + 1]) << 8 | UInt32(plain[i + 2]) << 16 | UInt32(plain[i + 3]) << 24)
            }
        }
    }

    /// Keeps embeddings of stored messages (in the caller's transaction if there is one);
    /// a message deleted meanwhile gets none.
    func saveEmbeddings(_ rows: [(message: [UInt8], embedding: [Float])], encoder: [UInt8]) throws {
        for (message, embedding) in rows {
            var plain = [UInt8]()
            plain.reserveCapacity(4 * embedding.count)
            for value in embedding { withUnsafeBytes(of: value.bitPattern.littleEndian) { plain += $0 } }
            try database.run("""
            INSERT OR REPLACE INTO embeddings(message, encoder, sealed) SELECT ?, ?, ? WHERE EXISTS (SELECT 1 FROM messages WHERE handle = ?)
            """, [.blob(message), .blob(encoder), .blob(try cipher.seal(plain, context: Self.embeddingContext(message: message, encoder: encoder))), .blob(message)])
        }
    }

    /// Stored messages, labelled or waiting for a label, that have no embedding of `encoder` yet (at most `limit`).
    func messagesWithoutEmbedding(encoder: [UInt8], limit: Int) throws -> [(message: [UInt8], text: String)] {
        var rows = [([UInt8], [UInt8], [UInt8])]()
        try database.run("""
        SELECT m.handle, m.customer, m.sealed_text FROM messages m
        WHERE NOT EXISTS (SELECT 1 FROM embeddings e WHERE e.message = m.handle AND e.encoder = ?) LIMIT ?
        """, [.blob(encoder), .integer(Int64(limit))]) { rows.append(($0.blob(0), $0.blob(1), $0.blob(2))) }
        return try rows.map { ($0, try openText($2, customer: $1)) }
    }

    /// How many stored messages have, and have not, an embedding of `encoder`.
    func embeddingCoverage(encoder: [UInt8]) throws -> (embedded: Int, messages: Int) {
        var result = (0, 0)
        try database.run("SELECT (SELECT COUNT(*) FROM embeddings WHERE encoder = ?), (SELECT COUNT(*) FROM messages)", [.blob(encoder)]) {
            result = (Int($0.integer(0)), Int($0.integer(1)))
        }
        return result
    }

    /// Deletes embeddings made by any other encoder; returns how many.
    @discardableResult
    func deleteEmbeddings(notOf encoder: [UInt8]) throws -> Int {
        try database.run("DELETE FROM embeddings WHERE encoder <> ?", [.blob(encoder)])
    }
}
