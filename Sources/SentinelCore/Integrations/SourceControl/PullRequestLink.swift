import Foundation

extension IntegrationSummary {
    /// The web page of a repository's pull request (GitHub) or merge request (GitLab) `number`:
    /// on GitHub `https://HOST/OWNER/REPO/pull/N` (github.com for `api.github.com`, the host of a
    /// GitHub Enterprise Server's `https://HOST/api/v3`); on GitLab
    /// `INSTANCE/GROUP/PROJECT/-/merge_requests/N` (the instance root may have a path of its own).
    /// Nil when the stored API URL has no host.
    public func pullRequestURL(repository fullName: String, number: Int) -> URL? {
        guard let api = URLComponents(string: apiURL), let host = api.host, !host.isEmpty else { return nil }
        var web = URLComponents()
        web.scheme = api.scheme ?? "https"
        web.port = api.port
        if kind == "gitlab" {
            web.host = host
            let root = api.path.hasSuffix("/") ? String(api.path.dropLast()) : api.path
            web.path = "\(root)/\(fullName)/-/merge_requests/\(number)"
        } else {
            web.host = host == "api.github.com" ? "github.com" : host
            web.path = "/\(fullName)/pull/\(number)"
        }
        return web.url
    }
}
