import CompressNIO
import Foundation
import GRDB
import NIOCore

/// How a webhook delivery's body is kept in `deliveries.payload` (`payload_encoding`).
///
/// Webhook bodies are verbose JSON that compresses about eight to one with zlib at its fastest
/// level (GitHub's 23.6 KB `pull_request.opened` example to 2.7 KB in about 40 µs): the body is
/// written once into the workspace file's log and once more into the file by its checkpoint, so
/// storing it compressed writes and keeps a fraction of the bytes. A body that does not shrink
/// (or is short) is kept as received. Rows written before `0014` are `identity`.
public enum DeliveryPayload {
    public enum Encoding: String, Sendable, Equatable {
        /// The body as received.
        case identity
        /// The zlib format of RFC 1950 (a deflate stream with its header and checksum).
        case zlib
    }

    /// Bodies shorter than this are kept as received (a `ping`, a GitLab system hook).
    static let minimumCompressedSize = 1_024

    /// A body as it is stored: `payload`, `payload_encoding`, and `payload_bytes` (the body's
    /// length, for a compressed one: a stream cut short decompresses without an error).
    public struct Stored: Sendable, Equatable {
        public var payload: Data
        public var encoding: Encoding
        public var bytes: Int?
    }

    public static func encode(_ body: Data) -> Stored {
        let asReceived = Stored(payload: body, encoding: .identity, bytes: nil)
        guard body.count >= minimumCompressedSize else { return asReceived }
        var input = ByteBuffer(data: body)
        guard let compressed = try? input.compress(with: .zlib(configuration: .init(compressionLevel: 1))),
              compressed.readableBytes < body.count else {
            return asReceived
        }
        return Stored(payload: Data(compressed.readableBytesView), encoding: .zlib, bytes: body.count)
    }

    /// The body of a `deliveries` row as it was received.
    public static func body(of row: Row) throws -> Data {
        try decode(row["payload"], encoding: row["payload_encoding"], bytes: row["payload_bytes"])
    }

    /// The body as it was received. Throws `StorageError.corrupt` for a stored body that does not
    /// decompress to its recorded length, `StorageError.invalid` for an encoding this binary does
    /// not know.
    public static func decode(_ stored: Data, encoding: String, bytes: Int?) throws -> Data {
        switch Encoding(rawValue: encoding) {
        case .identity: return stored
        case .zlib:
            guard let bytes, bytes >= 0, bytes <= DeliveryIntake.maxBodyBytes else {
                throw StorageError.corrupt("a stored webhook delivery has no valid length (\(bytes.map(String.init) ?? "none"))")
            }
            var input = ByteBuffer(data: stored)
            let body: ByteBuffer
            do {
                body = try input.decompress(with: .zlib(), maxSize: bytes)
            } catch {
                throw StorageError.corrupt("a stored webhook delivery does not decompress (\(error))")
            }
            guard body.readableBytes == bytes else {
                throw StorageError.corrupt("a stored webhook delivery decompresses to \(body.readableBytes) bytes, not \(bytes)")
            }
            return Data(body.readableBytesView)
        case nil: throw StorageError.invalid("a stored webhook delivery has an unknown payload encoding '\(encoding)'")
        }
    }
}
