import CZstd
import CompressNIO
import Foundation
import GRDB
import NIOCore
import Synchronization

/// How a webhook delivery's body is kept in `deliveries.payload` (`payload_encoding`).
///
/// Webhook bodies are verbose JSON that compresses about ten to one: the body is written once
/// into the workspace file's log and once more into the file by its checkpoint, so storing it
/// compressed writes and keeps a fraction of the bytes. Bodies are compressed with zstd at level 1
/// with its frame checksum (GitHub's 23.6 KB `pull_request.opened` example to 2.2 KB in about
/// 14 µs, where zlib's fastest level took 34 µs for 2.7 KB; docs/benchmarks.md). A body that does
/// not shrink (or is short) is kept as received. Rows written before `0014` are `identity`, rows
/// written between `0014` and `0016` are `zlib`; both still read.
public enum DeliveryPayload {
    public enum Encoding: String, Sendable, Equatable {
        /// The body as received.
        case identity
        /// The zlib format of RFC 1950 (a deflate stream with its header and checksum). Read only.
        case zlib
        /// One zstd frame (RFC 8878) holding the body's length and its checksum.
        case zstd
    }

    /// Bodies shorter than this are kept as received (a `ping`, a GitLab system hook).
    static let minimumCompressedSize = 1_024

    /// A body as it is stored: `payload`, `payload_encoding`, and `payload_bytes` (the body's
    /// length, for a compressed one: checked against what the stored bytes decompress to).
    public struct Stored: Sendable, Equatable {
        public var payload: Data
        public var encoding: Encoding
        public var bytes: Int?
    }

    public static func encode(_ body: Data) -> Stored {
        let asReceived = Stored(payload: body, encoding: .identity, bytes: nil)
        guard body.count >= minimumCompressedSize else { return asReceived }
        guard let compressed = ZstdContexts.compress(body), compressed.count < body.count else { return asReceived }
        return Stored(payload: compressed, encoding: .zstd, bytes: body.count)
    }

    /// The body of a `deliveries` row as it was received.
    public static func body(of row: Row) throws -> Data {
        try decode(row["payload"], encoding: row["payload_encoding"], bytes: row["payload_bytes"])
    }

    /// The body as it was received. Throws `StorageError.corrupt` for a stored body that does not
    /// decompress to its recorded length, `StorageError.invalid` for an encoding this binary does
    /// not know.
    public static func decode(_ stored: Data, encoding: String, bytes: Int?) throws -> Data {
        let body: Data
        let expected: Int
        switch Encoding(rawValue: encoding) {
        case .identity: return stored
        case .zstd:
            expected = try length(bytes)
            body = try ZstdContexts.decompress(stored, bytes: expected)
        case .zlib:
            expected = try length(bytes)
            // zlib gives back a stream cut short without an error: the length below tells.
            var input = ByteBuffer(data: stored)
            do {
                body = Data(try input.decompress(with: .zlib(), maxSize: expected).readableBytesView)
            } catch {
                throw StorageError.corrupt("a stored webhook delivery does not decompress (\(error))")
            }
        case nil: throw StorageError.invalid("a stored webhook delivery has an unknown payload encoding '\(encoding)'")
        }
        guard body.count == expected else {
            throw StorageError.corrupt("a stored webhook delivery decompresses to \(body.count) bytes, not \(expected)")
        }
        return body
    }

    /// A compressed body's recorded length, which every read checks.
    private static func length(_ bytes: Int?) throws -> Int {
        guard let bytes, bytes >= 0, bytes <= DeliveryIntake.maxBodyBytes else {
            throw StorageError.corrupt("a stored webhook delivery has no valid length (\(bytes.map(String.init) ?? "none"))")
        }
        return bytes
    }
}

/// zstd's compression and decompression contexts, kept for the next body: a context made for
/// one body and freed after it cost about 8 µs of the 22 µs of compressing a 23 KB body (its
/// tables allocated and cleared each time), and decompressing took 14 µs against 6 µs with a
/// kept context. Each context lives in a slot of its own and serves whoever holds the slot's
/// lock; a caller that finds every slot busy uses a context of its own for that body.
enum ZstdContexts {
    private final class Slot: Sendable {
        let context = Mutex<OpaquePointer?>(nil)
    }

    private static let compressors = (0..<4).map { _ in Slot() }
    private static let decompressors = (0..<4).map { _ in Slot() }

    /// One zstd frame at level 1 holding the body's length and checksum; nil if zstd fails.
    static func compress(_ body: Data) -> Data? {
        for slot in compressors {
            let done = slot.context.withLockIfAvailable { kept -> Data?? in
                if kept == nil { kept = makeCompressor() }
                guard let context = kept else { return .some(nil) }
                return .some(compress(body, with: context))
            }
            if let done, let result = done { return result }
        }
        guard let context = makeCompressor() else { return nil }
        defer { ZSTD_freeCCtx(context) }
        return compress(body, with: context)
    }

    /// The body of one zstd frame that must hold exactly `bytes` bytes.
    static func decompress(_ stored: Data, bytes: Int) throws -> Data {
        let declared = stored.withUnsafeBytes { ZSTD_getFrameContentSize($0.baseAddress, $0.count) }
        guard declared == UInt64(bytes) else {
            throw StorageError.corrupt("a stored webhook delivery is not one zstd frame of \(bytes) bytes")
        }
        for slot in decompressors {
            let done = slot.context.withLockIfAvailable { kept -> Result<Data, StorageError>? in
                if kept == nil { kept = ZSTD_createDCtx() }
                guard let context = kept else { return nil }
                return Result { () throws(StorageError) in try decompress(stored, bytes: bytes, with: context) }
            }
            if let done, let result = done { return try result.get() }
        }
        guard let context = ZSTD_createDCtx() else {
            throw StorageError.corrupt("zstd could not make a decompression context")
        }
        defer { ZSTD_freeDCtx(context) }
        return try decompress(stored, bytes: bytes, with: context)
    }

    /// Into uninitialised memory of the worst case's size, then the frame alone copied out: a
    /// `Data(count:)` of that size was zero-filled first (23 KB for a 3 KB frame) and kept whole.
    private static func compress(_ body: Data, with context: OpaquePointer) -> Data? {
        let capacity = ZSTD_compressBound(body.count)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: max(capacity, 1), alignment: 16)
        defer { output.deallocate() }
        let written = body.withUnsafeBytes { input in
            ZSTD_compress2(context, output.baseAddress, capacity, input.baseAddress, input.count)
        }
        guard ZSTD_isError(written) == 0 else { return nil }
        return Data(UnsafeRawBufferPointer(rebasing: output[..<written]))
    }

    private static func decompress(_ stored: Data, bytes: Int, with context: OpaquePointer) throws(StorageError) -> Data {
        var body = Data(count: bytes)
        let read = body.withUnsafeMutableBytes { out in
            stored.withUnsafeBytes { input in
                ZSTD_decompressDCtx(context, out.baseAddress, bytes, input.baseAddress, input.count)
            }
        }
        guard ZSTD_isError(read) == 0 else {
            // A failed frame can leave the context mid-frame; start it clean for the next body.
            ZSTD_DCtx_reset(context, ZSTD_reset_session_only)
            throw StorageError.corrupt("a stored webhook delivery does not decompress (zstd: \(String(cString: ZSTD_getErrorName(read))))")
        }
        guard read == bytes else {
            throw StorageError.corrupt("a stored webhook delivery decompresses to \(read) bytes, not \(bytes)")
        }
        return body
    }

    private static func makeCompressor() -> OpaquePointer? {
        guard let context = ZSTD_createCCtx() else { return nil }
        guard ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, 1)) == 0,
              ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_checksumFlag, 1)) == 0,
              ZSTD_isError(ZSTD_CCtx_setParameter(context, ZSTD_c_contentSizeFlag, 1)) == 0 else {
            ZSTD_freeCCtx(context)
            return nil
        }
        return context
    }
}
