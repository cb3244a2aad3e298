import GRDB
@testable import SentinelServer
import Testing

/// What a database error means to HTTP (`DatabaseError: ProblemConvertible`).
@Suite("storage errors as HTTP problems")
struct StorageProblemTests {
    @Test("a volume that cannot be written (read-only, I/O errors, a file that cannot be opened) is 503 with Retry-After, as a full one is; it was 500")
    func unwritableVolume() {
        for code in [ResultCode.SQLITE_READONLY, .SQLITE_IOERR, .SQLITE_CANTOPEN] {
            let problem = DatabaseError(resultCode: code).problem
            #expect(problem.status == 503, "\(code)")
            #expect(problem.retryAfter == 30, "\(code)")
            #expect(problem.type == "urn:sentinel:problem:storage-unavailable", "\(code)")
        }
        #expect(DatabaseError(resultCode: .SQLITE_FULL).problem.type == "urn:sentinel:problem:storage-full")
        #expect(DatabaseError(resultCode: .SQLITE_CONSTRAINT).problem.status == 500)
    }
}
