import Foundation
import SentinelCore

/// One message the `SMTPTestServer` accepted, as Python's `email` package parsed it.
public struct ReceivedMail: Sendable {
    public var mailFrom: String
    public var recipients: [String]
    /// Header name (lowercased) → decoded value.
    public var headers: [String: String]
    /// The decoded text body.
    public var body: String
    public var contentType: String
    public var charset: String?
    public var transferEncoding: String?
    /// What the parser found wrong with the message (an RFC 5322/MIME violation); empty for a well-formed one.
    public var defects: [String]
    /// Whether the message came over TLS, and as which user.
    public var tls: Bool
    public var login: String?
}

/// A real SMTP server on loopback: Python's `aiosmtpd` (PyPI), run as a subprocess with the Python
/// named by `SENTINEL_TEST_PYTHON` (`.ci/run` makes a venv with it; tests using it are skipped when
/// the variable is unset). It offers STARTTLS (`starttls`, required before anything else) or implicit
/// TLS (`tls`) with a certificate made here (`SelfSignedCertificate`, its own CA: `caPEM`), requires
/// AUTH (PLAIN or LOGIN, checked against `username`/`password`) and saves each accepted message as a
/// JSON file that `received()` reads.
public final class SMTPTestServer: Sendable {
    public static var python: String? {
        ProcessInfo.processInfo.environment["SENTINEL_TEST_PYTHON"].flatMap { $0.isEmpty ? nil : $0 }
    }
    public static var available: Bool { python != nil }

    public let port: Int
    public let caPEM: String
    public let username: String
    public let password: String
    let directory: TemporaryDirectory
    let process: ChildProcess

    public static func start(security: SMTPSecurity = .starttls, username: String = "sentinel", password: String = "mail-pass-0123") async throws -> SMTPTestServer {
        guard let python else { throw SMTPTestServerError("SENTINEL_TEST_PYTHON is not set") }
        let directory = TemporaryDirectory("sentinel-smtp")
        let (certificate, key) = try SelfSignedCertificate.make(hostname: "localhost")
        let certFile = directory.url.appendingPathComponent("cert.pem")
        let keyFile = directory.url.appendingPathComponent("key.pem")
        let script = directory.url.appendingPathComponent("smtpd.py")
        let mailDir = directory.url.appendingPathComponent("mail")
        let portFile = directory.url.appendingPathComponent("port")
        try FileManager.default.createDirectory(at: mailDir, withIntermediateDirectories: true)
        try Data(certificate.utf8).write(to: certFile)
        try Data(key.utf8).write(to: keyFile)
        try Data(Self.script.utf8).write(to: script)
        let log = directory.url.appendingPathComponent("smtpd.log")
        let process = try ChildProcess(executable: python,
                                       arguments: [script.path, mailDir.path, portFile.path, certFile.path, keyFile.path, username, password, security.rawValue],
                                       environment: ProcessInfo.processInfo.environment, stdout: .discard, stderr: .file(log.path))
        let ready = await eventually {
            (try? String(contentsOf: portFile, encoding: .utf8)).flatMap { Int($0) } != nil || !process.isRunning
        }
        guard ready, let port = (try? String(contentsOf: portFile, encoding: .utf8)).flatMap({ Int($0) }) else {
            process.signal(SIGKILL)
            let output = (try? String(contentsOf: log, encoding: .utf8)) ?? ""
            directory.cleanup()
            throw SMTPTestServerError("aiosmtpd did not start: \(output.suffix(2000))")
        }
        return SMTPTestServer(port: port, caPEM: certificate, username: username, password: password, directory: directory, process: process)
    }

    private init(port: Int, caPEM: String, username: String, password: String, directory: TemporaryDirectory, process: ChildProcess) {
        self.port = port
        self.caPEM = caPEM
        self.username = username
        self.password = password
        self.directory = directory
        self.process = process
    }

    /// The messages accepted so far, in arrival order.
    public func received() throws -> [ReceivedMail] {
        let mailDir = directory.url.appendingPathComponent("mail")
        let files = try FileManager.default.contentsOfDirectory(atPath: mailDir.path).filter { $0.hasSuffix(".json") }.sorted()
        return try files.map { name in
            let data = try Data(contentsOf: mailDir.appendingPathComponent(name))
            guard let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else { throw SMTPTestServerError("\(name) is not a JSON object") }
            return ReceivedMail(mailFrom: object["mail_from"] as? String ?? "", recipients: object["rcpt_tos"] as? [String] ?? [],
                                headers: object["headers"] as? [String: String] ?? [:], body: object["body"] as? String ?? "",
                                contentType: object["content_type"] as? String ?? "", charset: object["charset"] as? String,
                                transferEncoding: object["cte"] as? String, defects: object["defects"] as? [String] ?? [],
                                tls: object["tls"] as? Bool ?? false, login: object["login"] as? String)
        }
    }

    /// The next message's connection is dropped when its data has arrived, before any reply
    /// (as a mail server that crashes, or a network that fails, mid-session); later ones are taken.
    public func dropNextMessage() throws {
        try Data().write(to: directory.url.appendingPathComponent("drop-next"))
    }

    /// The next message is taken (saved) but its connection is dropped before the answer (a server
    /// that delivered it and then crashed, or an answer lost on the way): the sender cannot know.
    public func loseNextAnswer() throws {
        try Data().write(to: directory.url.appendingPathComponent("lose-next-answer"))
    }

    /// The next message's data is answered with `reply` (say, `354 hmm`, which delivers nothing),
    /// and not saved; later ones are taken.
    public func answerNextMessage(_ reply: String) throws {
        try Data(reply.utf8).write(to: directory.url.appendingPathComponent("answer-next"))
    }

    public func stop() {
        // SIGKILL: the child may have inherited an ignored SIGTERM.
        if process.isRunning {
            process.signal(SIGKILL)
            _ = process.waitUntilExitBlocking()
        }
        directory.cleanup()
    }

    static let script = #"""
import email, json, os, signal, socket, ssl, sys, threading
from email import policy
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

mail_dir, port_file, cert, key, user, password, mode = sys.argv[1:8]
signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
count = [0]
lock = threading.Lock()

class Handler:
    async def handle_DATA(self, server, session, envelope):
        drop = os.path.join(os.path.dirname(mail_dir), "drop-next")
        if os.path.exists(drop):
            os.remove(drop)
            server.transport.abort()
            return "421 4.3.0 never sent: the connection is gone"
        answer = os.path.join(os.path.dirname(mail_dir), "answer-next")
        if os.path.exists(answer):
            with open(answer) as f:
                reply = f.read()
            os.remove(answer)
            return reply
        msg = email.message_from_bytes(envelope.original_content, policy=policy.default)
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "headers": {k.lower(): str(v) for k, v in msg.items()},
            "body": msg.get_content() if not msg.is_multipart() else "",
            "content_type": msg.get_content_type(),
            "charset": msg.get_content_charset(),
            "cte": msg.get("Content-Transfer-Encoding"),
            "defects": [repr(d) for d in msg.defects] + [repr(d) for k, v in msg.items() for d in getattr(v, "defects", [])],
            "tls": session.ssl is not None or mode == "tls",
            "login": getattr(session, "sentinel_login", None),
        }
        with lock:
            count[0] += 1
            name = os.path.join(mail_dir, "%06d.json" % count[0])
        with open(name + ".tmp", "w") as f:
            json.dump(record, f)
        os.rename(name + ".tmp", name)
        lost = os.path.join(os.path.dirname(mail_dir), "lose-next-answer")
        if os.path.exists(lost):
            os.remove(lost)
            server.transport.abort()
            return "421 4.3.0 never sent: the connection is gone"
        return "250 2.0.0 Message accepted for delivery"

def authenticator(server, session, envelope, mechanism, auth_data):
    if isinstance(auth_data, LoginPassword) and auth_data.login == user.encode() and auth_data.password == password.encode():
        session.sentinel_login = auth_data.login.decode()
        return AuthResult(success=True)
    return AuthResult(success=False, handled=False)

context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
context.load_cert_chain(cert, key)
probe = socket.socket()
probe.bind(("127.0.0.1", 0))
port = probe.getsockname()[1]
probe.close()
if mode == "starttls":
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True,
                            auth_required=True, authenticator=authenticator)
else:
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, ssl_context=context,
                            auth_required=True, auth_require_tls=False, authenticator=authenticator)
controller.start()
with open(port_file + ".tmp", "w") as f:
    f.write(str(port))
os.rename(port_file + ".tmp", port_file)
threading.Event().wait()
"""#
}

public struct SMTPTestServerError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}
