import Foundation
import Testing
import SentinelCore

@Suite("Engine: built-in checks")
struct EngineBuiltinChecksTests {
    typealias F = EngineFixtures

    /// Secret-shaped values are assembled at run time so the repository itself holds none.
    static var secrets: [(line: String, secret: String, title: String)] {
        let awsID = "AK" + "IA" + F.token(16, from: F.upperDigits, seed: 1)
        let awsSecret = F.token(38, seed: 2) + "/+"
        let ghp = "gh" + "p_" + F.token(36, seed: 3)
        let ghs = "gh" + "s_" + F.token(36, seed: 4)
        let pat = "github" + "_pat_" + F.token(82, from: F.alnum + ["_"], seed: 5)
        let gitlab = "gl" + "pat-" + F.token(20, seed: 6)
        let slack = "xo" + "xb-" + "2384712" + "-" + F.token(24, seed: 7)
        let google = "AI" + "za" + F.token(35, from: F.alnum + ["_", "-"], seed: 8)
        let stripe = "sk" + "_live_" + F.token(24, seed: 9)
        let restricted = "rk" + "_live_" + F.token(24, seed: 10)
        let generic = F.token(24, seed: 11)
        let jsonKey = F.token(32, seed: 12)
        return [
            ("aws_access_key_id = \(awsID)", awsID, "AWS access key ID committed"),
            ("aws_secret_access_key = \(awsSecret)", awsSecret, "AWS secret access key committed"),
            ("const token = '\(ghp)';", ghp, "GitHub token committed"),
            ("GH_TOKEN=\(ghs)", ghs, "GitHub token committed"),
            ("auth: \(pat)", pat, "GitHub token committed"),
            ("gitlab_token: \"\(gitlab)\"", gitlab, "GitLab access token committed"),
            ("webhook(\"\(slack)\")", slack, "Slack token committed"),
            ("maps_key: \(google)", google, "Google API key committed"),
            ("Stripe.apiKey = \"\(stripe)\";", stripe, "Stripe live key committed"),
            ("STRIPE_RESTRICTED=\(restricted)", restricted, "Stripe live key committed"),
            ("    db_password = \"\(generic)\"", generic, "Hard-coded secret assigned to `db_password`"),
            ("  \"apiKey\": \"\(jsonKey)\",", jsonKey, "Hard-coded secret assigned to `apiKey`"),
        ]
    }

    @Test func everySecretTypeIsFoundAndRedacted() throws {
        let cases = Self.secrets
        let file = F.addedFile("config/settings.py", lines: cases.map(\.line))
        let findings = BuiltinChecks.run(on: [file])
        #expect(findings.count == cases.count)
        for (index, c) in cases.enumerated() {
            let onLine = findings.filter { $0.line == index + 1 }
            #expect(onLine.count == 1, "line \(index + 1): \(onLine.map(\.title))")
            guard let f = onLine.first else { continue }
            #expect(f.title == c.title)
            #expect(f.severity == .critical)
            #expect(f.category == "security")
            #expect(f.source == .builtin)
            #expect(f.side == .right)
            #expect(f.path == "config/settings.py")
            #expect(!f.title.contains(c.secret) && !f.body.contains(c.secret), "secret leaked on line \(index + 1)")
            #expect(!f.body.contains(String(c.secret.dropFirst(4).dropLast(4))))
            #expect(f.suggestion == nil)
        }
    }

    @Test func documentedExampleKeyIsRedactedToPrefixAndSuffix() throws {
        let file = F.addedFile("deploy.sh", lines: ["export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE"])
        let finding = try #require(BuiltinChecks.run(on: [file]).first)
        #expect(finding.body.contains("AKIA…MPLE"))
        #expect(!finding.body.contains("AKIAIOSFODNN7EXAMPLE"))
        #expect(BuiltinChecks.redact("short") == "…")
        #expect(BuiltinChecks.redact("abcdefghijklmn") == "ab…mn")
    }

    @Test func privateKeyBlocks() {
        let kinds = ["", "RSA ", "EC ", "OPENSSH ", "DSA ", "ENCRYPTED "]
        let lines = kinds.map { "-----BEGIN \($0)PRIVATE KEY-----" } + ["-----BEGIN PGP PRIVATE KEY BLOCK-----",
                                                                        "-----BEGIN PUBLIC KEY-----",
                                                                        "-----BEGIN CERTIFICATE-----"]
        let findings = BuiltinChecks.run(on: [F.addedFile("keys/id.pem", lines: lines)])
        #expect(findings.map(\.line) == Array(1...7))
        #expect(findings.allSatisfy { $0.title == "Private key committed" && $0.severity == .critical })
    }

    @Test func placeholdersAndReferencesAreIgnored() {
        let lines = [
            "password = \"changeme-changeme-123\"",
            "api_key = \"${API_KEY_FROM_ENVIRONMENT}\"",
            "token = \"<your-token-goes-here>\"",
            "secret = \"xxxxxxxxxxxxxxxxxxxxxxxx\"",
            "password = os.environ[\"DATABASE_PASSWORD\"]",
            "const token = process.env.GITHUB_TOKEN;",
            "password = \"hunter2\"",
            "secret_key = \"aaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
            "token_url = \"https://auth.internal.test/oauth2/v1/token\"",
            "password_hint = \"Kx9vQ2mZp7LwR4tY8nB3\"",
            "secret: \"SERVICE_ACCOUNT_PRIVATE_KEY_NAME\"",
            "if password == \"\(F.token(24, seed: 30))\" {",
            "error = \"The password you entered is incorrect, try again\"",
            "let greeting = \"\(F.token(30, seed: 31))\"",
        ]
        let findings = BuiltinChecks.run(on: [F.addedFile("app/settings.py", lines: lines)])
        #expect(findings.isEmpty, "\(findings.map { "\($0.line): \($0.title)" })")
    }

    @Test func onlyAddedLinesOfLiveFilesAreChecked() throws {
        let secret = "gh" + "p_" + F.token(36, seed: 40)
        let diff = F.text(
            "diff --git a/a.env b/a.env",
            "--- a/a.env",
            "+++ b/a.env",
            "@@ -1,3 +1,3 @@",
            " KEEP=\(secret)",
            "-OLD=\(secret)",
            "+NEW=value",
            " END=1",
            "diff --git a/b.env b/b.env",
            "deleted file mode 100644",
            "--- a/b.env",
            "+++ /dev/null",
            "@@ -1 +0,0 @@",
            "-TOKEN=\(secret)"
        )
        #expect(BuiltinChecks.run(on: try UnifiedDiff.parse(diff)).isEmpty)
    }

    @Test func oneFindingPerLinePerRule() {
        let a = "gh" + "p_" + F.token(36, seed: 50), b = "gh" + "o_" + F.token(36, seed: 51)
        let findings = BuiltinChecks.run(on: [F.addedFile("x.txt", lines: ["tokens = [\"\(a)\", \"\(b)\"]"])])
        #expect(findings.count == 1)
    }

    @Test func mergeConflictMarkers() throws {
        let file = F.addedFile("src/merge.swift", lines: [
            "func value() -> Int {",
            "<<<<<<< HEAD",
            "    return 1",
            "||||||| base",
            "    return 0",
            "=======",
            "    return 2",
            ">>>>>>> feature/login",
            "}",
            ">>>>>>> stray",
        ])
        let findings = BuiltinChecks.run(on: [file])
        #expect(findings.count == 2)
        let block = try #require(findings.first)
        #expect(block.startLine == 2 && block.line == 8)
        #expect(block.severity == .high && block.category == "correctness" && block.source == .builtin)
        #expect(findings[1].line == 10 && findings[1].startLine == nil)

        // A setext heading underline is not a conflict; "<<<<<<<<" (eight) is not a marker.
        let markdown = F.addedFile("README.md", lines: ["Title", "=======", "<<<<<<<< not a marker", "text"])
        #expect(BuiltinChecks.run(on: [markdown]).isEmpty)
    }

    @Test("bidirectional control characters in added lines are flagged by code point and column; marks, right-to-left text and other lines are not")
    func bidiControlsFlagged() throws {
        // The "Trojan Source" example: the comment's closing quote is displayed inside the string.
        let trojan = "if access_level != \"user\u{202E} \u{2066}// Check if admin\u{2069} \u{2066}\" {"
        let many = String(repeating: "\u{202A}x\u{202C}", count: 4)          // eight controls
        let file = DiffFile(oldPath: "auth.py", newPath: "auth.py", status: .modified, hunks: [DiffHunk(
            oldStart: 1, oldCount: 3, newStart: 1, newCount: 5, lines: [
                DiffLine(kind: .context, oldLine: 1, newLine: 1, text: "# old \u{202E} context"),
                DiffLine(kind: .removed, oldLine: 2, newLine: nil, text: "x = \"\u{2067}removed\""),
                DiffLine(kind: .added, oldLine: nil, newLine: 2, text: trojan),
                DiffLine(kind: .added, oldLine: nil, newLine: 3, text: "greeting = \"\u{05E9}\u{05DC}\u{05D5}\u{05DD}\u{200F} \u{0645}\u{0631}\u{062D}\u{0628}\u{0627}\u{061C}\u{200E}\""),
                DiffLine(kind: .added, oldLine: nil, newLine: 4, text: many),
                DiffLine(kind: .added, oldLine: nil, newLine: 5, text: "plain = \"\u{2028}\u{20AC}\u{2019}\""),
                DiffLine(kind: .context, oldLine: 3, newLine: 6, text: "pass"),
            ])])
        let findings = BuiltinChecks.run(on: [file])
        #expect(findings.map(\.line) == [2, 4], "\(findings)")
        let first = try #require(findings.first)
        #expect(first.title == "Bidirectional control character in the code")
        #expect(first.severity == .high && first.category == "security" && first.source == .builtin && first.side == .right)
        #expect(first.body.hasPrefix("This line contains U+202E RIGHT-TO-LEFT OVERRIDE (column 25), U+2066 LEFT-TO-RIGHT ISOLATE (column 27), "
                                     + "U+2069 POP DIRECTIONAL ISOLATE (column 45) and U+2066 LEFT-TO-RIGHT ISOLATE (column 47)."), "\(first.body)")
        #expect(first.body.contains("Trojan Source") && first.body.contains("`\\u202E`"))
        #expect(findings[1].body.contains("U+202A LEFT-TO-RIGHT EMBEDDING (column 7) and 3 more."), "\(findings[1].body)")
        // The comments name the characters without carrying them (they would reorder the comment itself).
        for finding in findings {
            #expect(!finding.body.unicodeScalars.contains { (0x202A...0x202E).contains($0.value) || (0x2066...0x2069).contains($0.value) })
        }
        // A finding per line, stable across moves like the other checks.
        let moved = BuiltinChecks.run(on: [F.addedFile("auth.py", lines: ["", "", trojan])])
        #expect(moved.count == 1 && moved[0].line == 3 && moved[0].fingerprint == first.fingerprint)
    }

    @Test func fingerprintsAreStableAndDistinct() {
        let secret = "gh" + "p_" + F.token(36, seed: 60)
        let one = BuiltinChecks.run(on: [F.addedFile("a.txt", lines: ["x", "T=\(secret)"])])
        let shifted = BuiltinChecks.run(on: [F.addedFile("a.txt", lines: ["x", "y", "z", "T=\(secret)"])])
        #expect(one.count == 1 && shifted.count == 1)
        #expect(one[0].fingerprint == shifted[0].fingerprint)
        #expect(one[0].line == 2 && shifted[0].line == 4)
    }

    @Test("two conflict blocks with the same marker lines in one file are two findings (one fingerprint made the ranker drop the second)")
    func repeatedConflictsAreDistinct() throws {
        let block = ["<<<<<<< HEAD", "b = 2", "=======", "b = 3", ">>>>>>> feature"]
        let file = F.addedFile("c.py", lines: ["a = 1"] + block + ["c = 1"] + Array(repeating: "x = 1", count: 40) + block + ["z = 1"])
        let findings = BuiltinChecks.run(on: [file])
        #expect(findings.count == 2 && Set(findings.map(\.fingerprint)).count == 2, "\(findings.map { ($0.line, $0.fingerprint) })")
        let ranked = FindingRanker.select(findings, minSeverity: .low, maxComments: 10, alreadyPosted: [])
        #expect(ranked.selected.count == 2 && ranked.duplicates == 0)
        // The first keeps the fingerprint it had: earlier reviews still recognise it.
        let alone = BuiltinChecks.run(on: [F.addedFile("c.py", lines: ["a = 1"] + block + ["c = 1"])])
        #expect(alone.first?.fingerprint == findings.first?.fingerprint)
    }

    @Test("a long line of `a=a=a=…` is read once (each operator read the rest of the line: minutes for 40 KB); a secret after it is still found")
    func longAssignmentRunsAreLinear() {
        let run = String(repeating: "a=", count: 20_000)
        #expect(BuiltinChecks.run(on: [F.addedFile("q.txt", lines: [run, String(repeating: "a:", count: 20_000)])]).isEmpty)
        let findings = BuiltinChecks.run(on: [F.addedFile("settings.py", lines: [run + #" password = "Zx9kQ2mP7vL4wR8tY6uB""#])])
        #expect(findings.count == 1, "\(findings.map(\.title))")
    }
}
