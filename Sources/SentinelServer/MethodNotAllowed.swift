import HTTPTypes
import Hummingbird
import SentinelCore

/// A request for a path that exists, with a method it does not take (`DELETE /healthz`, `GET` on a
/// webhook URL, `PUT /api/v1/workspaces`), is answered 405 with `Allow` listing the methods it
/// takes (RFC 9110 §15.5.6), not 404 as if the path were not there. Added after every route, so it
/// wraps only the router's not-found answer: a matched request never passes through it.
struct MethodNotAllowedMiddleware: RouterMiddleware {
    typealias Context = SentinelRequestContext

    struct Route: Sendable {
        let path: RouterPath
        let method: HTTPRequest.Method
    }

    let routes: [Route]

    init(router: Router<Context>) {
        routes = router.routes.map { Route(path: $0.path, method: $0.method) }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = allowedMethods(for: request.uri.path)
            guard !allowed.isEmpty, !allowed.contains(request.method.rawValue) else { throw error }
            let list = allowed.joined(separator: ", ")
            var response = Problem(status: .methodNotAllowed, detail: "\(request.method.rawValue) is not allowed here; \(request.uri.path.prefix(200)) takes \(list)")
                .response(requestID: context.correlationID)
            response.headers[.allow] = list
            return response
        }
    }

    /// The methods the routes matching `path` take, HEAD wherever GET is (the router answers it).
    /// Like the router, a literal segment wins over a parameter: `/integrations/manifest` (POST
    /// only) is not `/integrations/:integrationId` (GET), whose GET the router never reaches for it;
    /// counted, the GET made the answer a 404.
    func allowedMethods(for path: String) -> [String] {
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        let matching = routes.filter { Self.matches($0.path, components) }
        guard let most = matching.map({ Self.literals($0.path) }).max(by: { $0.lexicographicallyPrecedes($1) }) else { return [] }
        var methods = Set<String>()
        for route in matching where Self.literals(route.path) == most {
            methods.insert(route.method.rawValue)
            if route.method == .get { methods.insert(HTTPRequest.Method.head.rawValue) }
        }
        return methods.sorted()
    }

    /// For each segment of a route, 1 where it is literal, 0 where it captures.
    static func literals(_ route: RouterPath) -> [Int] {
        // A literal segment is the one equal to the literal of its own text.
        route.components.map { $0 == .path(Substring($0.description)) ? 1 : 0 }
    }

    static func matches(_ route: RouterPath, _ components: [Substring]) -> Bool {
        var index = 0
        for element in route.components {
            if element == .recursiveWildcard { return true }
            guard index < components.count, element ~= components[index] else { return false }
            index += 1
        }
        return index == components.count
    }
}
