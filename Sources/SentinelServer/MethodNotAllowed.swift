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
    func allowedMethods(for path: String) -> [String] {
        let components = path.split(separator: "/", omittingEmptySubsequences: true)
        var methods = Set<String>()
        for route in routes where Self.matches(route.path, components) {
            methods.insert(route.method.rawValue)
            if route.method == .get { methods.insert(HTTPRequest.Method.head.rawValue) }
        }
        return methods.sorted()
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
