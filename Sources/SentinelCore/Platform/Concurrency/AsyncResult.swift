extension Result where Failure == any Error {
    /// The outcome of an async throwing body, kept to be handed on or looked at later (a result
    /// awaited beside other work, the token several callers wait for). The body runs in the
    /// caller's isolation.
    init(isolation: isolated (any Actor)? = #isolation, catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}
