import Testing
import Foundation
import SentinelCore

@Suite("Layer merging, locks, snapshots, explain")
struct ResolverTests {
    // MARK: Merge rule

    @Test func listsReplace() {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: ["review.paths.exclude": .list(["vendor/**", "*.lock"])]),
            LayerInput(layer: .repository, values: ["review.paths.exclude": .list(["docs/**"])]),
        ])
        #expect(policy.values["review.paths.exclude"] == .list(["docs/**"]))
        #expect(policy.entry(for: "review.paths.exclude")?.source == .repository)

        // An empty list is a value too: it replaces (clears) the lower layers' list.
        let cleared = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: ["ai.allowed_models": .list(["gpt-4o"])]),
            LayerInput(layer: .repositoryFile, values: ["ai.allowed_models": .list([])]),
        ])
        #expect(cleared.values["ai.allowed_models"] == .list([]))
        #expect(cleared.entry(for: "ai.allowed_models")?.source == .repositoryFile)
    }

    @Test func mapsMergeByKey() {
        let key = "review.path_instructions"
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: [key: .map(["a/**": "ws a", "b/**": "ws b"])]),
            LayerInput(layer: .repository, values: [key: .map(["b/**": "repo b", "c/**": "repo c"])]),
            LayerInput(layer: .repositoryFile, values: [key: .map(["c/**": "file c", "d/**": "file d"])]),
        ])
        #expect(policy.values[key] == .map(["a/**": "ws a", "b/**": "repo b", "c/**": "file c", "d/**": "file d"]))
        #expect(policy.entry(for: key)?.source == .repositoryFile)
    }

    @Test func mapSourceIsHighestContributingLayer() {
        let key = "review.path_instructions"
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: [key: .map(["a/**": "ws a"])]),
            LayerInput(layer: .repository, values: [key: .map(["b/**": "repo b"])]),
            LayerInput(layer: .repositoryFile, values: [key: .map([:])]),  // contributes nothing
        ])
        #expect(policy.values[key] == .map(["a/**": "ws a", "b/**": "repo b"]))
        #expect(policy.entry(for: key)?.source == .repository)
    }

    @Test func emptyTextRemovesInheritedMapEntry() {
        let key = "review.path_instructions"
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: [key: .map(["a/**": "ws a", "b/**": "ws b"])]),
            LayerInput(layer: .repositoryFile, values: [key: .map(["a/**": ""])]),
        ])
        #expect(policy.values[key] == .map(["b/**": "ws b"]))
        #expect(policy.entry(for: key)?.source == .repositoryFile)
    }

    @Test func lockedMapCannotGainEntries() {
        let key = "review.path_instructions"
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: [key: .map(["a/**": "ws a"])], locks: [key]),
            LayerInput(layer: .repositoryFile, values: [key: .map(["z/**": "mine"])]),
        ])
        #expect(policy.values[key] == .map(["a/**": "ws a"]))
        #expect(policy.violations == [
            LockViolation(key: key, attemptedBy: .repositoryFile, lockedBy: .workspace,
                          attemptedValue: .map(["z/**": "mine"]), lockedValue: .map(["a/**": "ws a"])),
        ])
    }

    // MARK: Locks

    @Test func lockViolationsAreRecordedNotDropped() throws {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: ["review.fail_on": .string("high"), "ai.allowed_models": .list(["gpt-4o"])],
                       locks: ["review.fail_on", "ai.allowed_models"]),
            LayerInput(layer: .repository, values: ["review.fail_on": .string("none")]),
            LayerInput(layer: .repositoryFile, values: ["review.fail_on": .string("critical"),
                                                        "ai.allowed_models": .list(["my-cheap-model"]),
                                                        "review.max_comments": .int(5)]),
        ])
        #expect(policy.values["review.fail_on"] == .string("high"))
        #expect(policy.values["ai.allowed_models"] == .list(["gpt-4o"]))
        #expect(policy.values["review.max_comments"] == .int(5))   // not locked: applied
        // Sorted by key, then attempting layer.
        #expect(policy.violations.map { "\($0.key)<-\($0.attemptedBy.rawValue)" } == [
            "ai.allowed_models<-file", "review.fail_on<-repository", "review.fail_on<-file",
        ])
        let v = try #require(policy.violations.first)
        #expect(v.lockedBy == .workspace)
        #expect(v.attemptedValue == .list(["my-cheap-model"]))
        #expect(v.lockedValue == .list(["gpt-4o"]))
        #expect(v.message == #"ai.allowed_models is locked by workspace defaults; the value ["my-cheap-model"] from .sentinel.yml was ignored and ["gpt-4o"] stays in effect"#)
        // And the explain output carries them.
        let json = try #require(try JSONSerialization.jsonObject(with: policy.explainJSON()) as? [String: Any])
        #expect((json["violations"] as? [[String: Any]])?.count == 3)
    }

    @Test func settingALockedKeyToItsValueIsNotAViolation() {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: ["review.language": .string("de")], locks: ["review.language"]),
            LayerInput(layer: .repositoryFile, values: ["review.language": .string("de")]),
        ])
        #expect(policy.violations.isEmpty)
        #expect(policy.entry(for: "review.language")?.source == .workspace)
    }

    @Test func lockingAKeyWithoutSettingItLocksTheInheritedValue() {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, locks: ["review.builtin_checks"]),
            LayerInput(layer: .repositoryFile, values: ["review.builtin_checks": .bool(false)]),
        ])
        #expect(policy.values["review.builtin_checks"] == .bool(true))
        let entry = policy.entry(for: "review.builtin_checks")
        #expect(entry?.source == .builtin)
        #expect(entry?.lockedBy == .workspace)
        #expect(policy.violations.count == 1)
    }

    @Test func builtinAndFileLayersCannotLock() {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .builtin, locks: ["review.enabled"]),
            LayerInput(layer: .repositoryFile, values: ["review.enabled": .bool(false)], locks: ["review.max_comments"]),
        ])
        #expect(policy.values["review.enabled"] == .bool(false))
        #expect(policy.entries.allSatisfy { !$0.locked })
        #expect(policy.rejected.map { "\($0.layer.rawValue):\($0.key)" } == ["builtin:review.enabled", "file:review.max_comments"])
    }

    @Test func invalidLayerValuesAreRejectedAndReported() {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: ["review.max_comments": .string("many"),
                                                   "review.colour": .string("blue"),
                                                   "review.min_severity": .string("severe")],
                       locks: ["review.nope"]),
        ])
        #expect(policy.values == PolicySchema.defaults)
        #expect(policy.rejected.map(\.key) == ["review.colour", "review.max_comments", "review.min_severity", "review.nope"])
        #expect(policy.rejected.allSatisfy { $0.layer == .workspace })
    }

    // MARK: Determinism, snapshot, versions

    @Test func snapshotIsCanonicalAcrossInsertionOrder() {
        let pairs: [(String, PolicyValue)] = [
            ("review.max_comments", .int(7)),
            ("review.path_instructions", .map(["z/**": "z", "a/**": "a", "m/**": "m"])),
            ("ai.providers", .list(["openai", "anthropic"])),
            ("review.instructions", .string("Be \"brief\".\nUse ünïcode ✓\t")),
            ("review.enabled", .bool(false)),
        ]
        var forward: [String: PolicyValue] = [:]
        for (k, v) in pairs { forward[k] = v }
        var backward: [String: PolicyValue] = [:]
        for (k, v) in pairs.reversed() { backward[k] = v }
        var reversedMap = backward
        reversedMap["review.path_instructions"] = .map(Dictionary(uniqueKeysWithValues: [("m/**", "m"), ("a/**", "a"), ("z/**", "z")]))

        let a = PolicyResolver.resolve([LayerInput(layer: .repository, values: forward)])
        let b = PolicyResolver.resolve([LayerInput(layer: .repository, values: reversedMap)])
        #expect(a.snapshotJSON() == b.snapshotJSON())
        #expect(a.sha256 == b.sha256)
        #expect(a.sha256.count == 64)
        #expect(a.sha256.allSatisfy { "0123456789abcdef".contains($0) })

        // Same values from different layers: same snapshot (provenance is not part of it).
        let c = PolicyResolver.resolve([LayerInput(layer: .repositoryFile, values: forward)])
        #expect(c.sha256 == a.sha256)

        // A different value: a different hash.
        var changed = forward
        changed["review.max_comments"] = .int(8)
        #expect(PolicyResolver.resolve([LayerInput(layer: .repository, values: changed)]).sha256 != a.sha256)
    }

    @Test func snapshotFormatIsPinned() {
        let policy = PolicyResolver.resolve([])
        let text = String(decoding: policy.snapshotJSON(), as: UTF8.self)
        #expect(text == #"{"format":1,"values":{"ai.allowed_models":[],"ai.providers":[],"review.auto_review.drafts":false,"review.auto_review.on_open":true,"review.auto_review.on_push":true,"review.builtin_checks":true,"review.enabled":true,"review.event":"comment","review.fail_on":"critical","review.instructions":"","review.language":"en","review.max_comments":25,"review.min_severity":"low","review.path_instructions":{},"review.paths.exclude":[],"review.paths.include":[]}}"#)
        #expect(policy.sha256 == ResolverTests.defaultsSHA256)
    }

    /// SHA-256 of the pinned defaults snapshot above (computed once; a change here means the
    /// canonical form or the defaults changed, which changes every stored hash).
    static let defaultsSHA256 = "234550eed2195a42a5aa78008b739b372cda65d46ceecbf9c989b8f384e90340"

    @Test func escapingInSnapshot() throws {
        let policy = PolicyResolver.resolve([LayerInput(layer: .repository, values: ["review.instructions": .string("a\"b\\c\nd\u{1}é")])])
        let text = String(decoding: policy.snapshotJSON(), as: UTF8.self)
        #expect(text.contains(#""review.instructions":"a\"b\\c\nd\u0001é""#))
        // It is valid JSON that reads back to the same values.
        #expect(try EffectivePolicy.values(fromSnapshot: policy.snapshotJSON()) == policy.values)
    }

    @Test func runSnapshotDoesNotChangeWhenSettingsChangeLater() throws {
        // A run resolves and stores its snapshot, hash and version ids.
        var workspace = LayerInput(layer: .workspace, values: ["review.min_severity": .string("medium")], versionID: "wsv-1")
        let repository = LayerInput(layer: .repository, values: ["review.max_comments": .int(10)], versionID: "rpv-7")
        let atRun = PolicyResolver.resolve([workspace, repository])
        let stored = (snapshot: atRun.snapshotJSON(), sha: atRun.sha256, versions: atRun.versionIDs)
        #expect(stored.versions == [.workspace: "wsv-1", .repository: "rpv-7"])

        // The admin changes workspace defaults afterwards: a new version, a new effective config.
        workspace = LayerInput(layer: .workspace, values: ["review.min_severity": .string("high")], versionID: "wsv-2")
        let later = PolicyResolver.resolve([workspace, repository])
        #expect(later.sha256 != stored.sha)
        #expect(later.versionIDs[.workspace] == "wsv-2")

        // The stored snapshot still reads back to what the run used.
        let values = try EffectivePolicy.values(fromSnapshot: stored.snapshot)
        #expect(values == atRun.values)
        #expect(ReviewPolicy(values: values).minSeverity == .medium)
        #expect(stored.sha == atRun.sha256)
    }

    @Test func resolutionIsDeterministic() {
        let layers = [
            LayerInput(layer: .repositoryFile, values: ["review.language": .string("fr"), "review.fail_on": .string("low")]),
            LayerInput(layer: .workspace, values: ["review.language": .string("de")], locks: ["review.fail_on"], versionID: "w"),
            LayerInput(layer: .repository, values: ["review.event": .string("request_changes")], versionID: "r"),
        ]
        let first = PolicyResolver.resolve(layers)
        for _ in 0..<20 {
            let again = PolicyResolver.resolve(layers.shuffled())
            #expect(again == first)
            #expect(again.explainJSON() == first.explainJSON())
        }
    }

    @Test func sameLayerInputsApplyInGivenOrder() {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .repository, values: ["review.language": .string("de")]),
            LayerInput(layer: .repository, values: ["review.language": .string("fr")]),
        ])
        #expect(policy.values["review.language"] == .string("fr"))
    }

    // MARK: Explain

    @Test func explainNamesTheRightLayer() throws {
        let policy = PolicyResolver.resolve([
            LayerInput(layer: .workspace, values: ["review.min_severity": .string("medium"),
                                                   "review.fail_on": .string("high"),
                                                   "review.path_instructions": .map(["a/**": "ws"])],
                       locks: ["review.fail_on"], versionID: "ws-3"),
            LayerInput(layer: .repository, values: ["review.max_comments": .int(12)],
                       locks: ["review.language"], versionID: "repo-9"),
            LayerInput(layer: .repositoryFile, values: ["review.language": .string("ja"),
                                                        "review.instructions": .string("be kind"),
                                                        "review.fail_on": .string("none"),
                                                        "review.path_instructions": .map(["b/**": "file"])],
                       versionID: "deadbeef"),
        ])
        let expected: [String: (PolicyLayer, PolicyLayer?)] = [
            "ai.allowed_models": (.builtin, nil),
            "ai.providers": (.builtin, nil),
            "review.auto_review.drafts": (.builtin, nil),
            "review.auto_review.on_open": (.builtin, nil),
            "review.auto_review.on_push": (.builtin, nil),
            "review.builtin_checks": (.builtin, nil),
            "review.enabled": (.builtin, nil),
            "review.event": (.builtin, nil),
            "review.fail_on": (.workspace, .workspace),
            "review.instructions": (.repositoryFile, nil),
            "review.language": (.builtin, .repository),
            "review.max_comments": (.repository, nil),
            "review.min_severity": (.workspace, nil),
            "review.path_instructions": (.repositoryFile, nil),
            "review.paths.exclude": (.builtin, nil),
            "review.paths.include": (.builtin, nil),
        ]
        #expect(policy.entries.map(\.key) == PolicySchema.keys.map(\.path))
        #expect(policy.entries.count == expected.count)
        for e in policy.entries {
            let want = try #require(expected[e.key], "\(e.key)")
            #expect(e.source == want.0, "\(e.key)")
            #expect(e.lockedBy == want.1, "\(e.key)")
            #expect(e.locked == (want.1 != nil), "\(e.key)")
            #expect(e.value == policy.values[e.key])
        }
        #expect(policy.values["review.language"] == .string("en"))
        #expect(policy.values["review.path_instructions"] == .map(["a/**": "ws", "b/**": "file"]))
        #expect(policy.violations.map(\.key) == ["review.fail_on", "review.language"])

        // The JSON document (CLI --json / API) says the same.
        let json = try #require(try JSONSerialization.jsonObject(with: policy.explainJSON()) as? [String: Any])
        let entries = try #require(json["entries"] as? [[String: Any]])
        #expect(entries.count == 16)
        let failOn = try #require(entries.first { $0["key"] as? String == "review.fail_on" })
        #expect(failOn["source"] as? String == "workspace")
        #expect(failOn["locked"] as? Bool == true)
        #expect(failOn["locked_by"] as? String == "workspace")
        #expect(failOn["value"] as? String == "high")
        let instr = try #require(entries.first { $0["key"] as? String == "review.instructions" })
        #expect(instr["source"] as? String == "file")
        #expect(instr["locked_by"] is NSNull)
        #expect(json["versions"] as? [String: String] == ["workspace": "ws-3", "repository": "repo-9", "file": "deadbeef"])
        #expect(json["sha256"] as? String == policy.sha256)

        let text = policy.explainText()
        #expect(text.contains("review.fail_on") && text.contains("(workspace, locked by workspace)"))
        #expect(text.contains("lock violation: review.language is locked by repository settings"))
    }

    // MARK: Typed view

    @Test func reviewPolicyTypedView() {
        let d = ReviewPolicy.defaults
        #expect(d.reviewEnabled && d.autoReviewOnOpen && d.autoReviewOnPush && !d.autoReviewDrafts)
        #expect(d.include.isEmpty && d.exclude.isEmpty && d.instructions.isEmpty && d.pathInstructions.isEmpty)
        #expect(d.minSeverity == .low && d.maxComments == 25 && d.failOn == .critical && !d.requestChanges)
        #expect(d.language == "en" && d.builtinChecks && d.providerPreference.isEmpty && d.allowedModels.isEmpty)

        let policy = PolicyResolver.resolve([
            LayerInput(layer: .repository, values: [
                "review.fail_on": .string("none"),
                "review.event": .string("request_changes"),
                "review.min_severity": .string("high"),
                "review.path_instructions": .map(["tests/**": "t", "Sources/**": "s", "*.md": "m"]),
                "review.paths.include": .list(["Sources/**", "Tests/**", "*.md"]),
                "review.paths.exclude": .list(["**/Generated/**", "CHANGELOG.md"]),
                "ai.providers": .list(["anthropic", "openai"]),
                "ai.allowed_models": .list(["gpt-4o", "claude-sonnet-4*"]),
            ]),
        ])
        let p = ReviewPolicy(policy)
        #expect(p.failOn == nil)
        #expect(!p.fails(.critical))
        #expect(p.requestChanges)
        #expect(p.minSeverity == .high)
        #expect(p.pathInstructions.map(\.glob) == ["*.md", "Sources/**", "tests/**"])
        #expect(p.pathInstructions.map(\.text) == ["m", "s", "t"])
        #expect(p.providerPreference == ["anthropic", "openai"])
        // The engine's path filter and the provider router apply these settings.
        let paths = PathFilter(include: p.include, exclude: p.exclude, defaultSkips: false)
        func reviewed(_ path: String) -> Bool { paths.decision(for: DiffFile(oldPath: path, newPath: path, status: .modified)) == .review }
        #expect(reviewed("Sources/App/main.swift"))
        #expect(reviewed("docs/guide.md"))
        #expect(!reviewed("CHANGELOG.md"))
        #expect(!reviewed("Sources/Generated/Models.swift"))
        #expect(!reviewed("scripts/build.sh"))
        let router = RouterPolicy(providerPreference: p.providerPreference, allowedModels: p.allowedModels)
        #expect(router.allowsModel("gpt-4o") && !router.allowsModel("gpt-4o-mini"))
        #expect(router.allowsModel("claude-sonnet-4-5"))
        #expect(!router.allowsModel("llama3"))

        let failing = ReviewPolicy(values: ["review.fail_on": .string("medium")])
        #expect(failing.fails(.medium) && failing.fails(.critical) && !failing.fails(.low))
        // Ill-typed values fall back to defaults.
        #expect(ReviewPolicy(values: ["review.max_comments": .string("x")]).maxComments == 25)
    }

    // MARK: Dashboard / CLI validation

    @Test func workspaceSettingsValidator() throws {
        try WorkspaceSettingsValidator.validate(values: ["review.max_comments": .int(50), "review.fail_on": .string("none")],
                                                locks: ["review.fail_on", "ai.allowed_models"])
        #expect(throws: PolicySettingsError.self) {
            try WorkspaceSettingsValidator.validate(values: ["review.max_comment": .int(5)], locks: [])
        }
        do {
            try WorkspaceSettingsValidator.validate(values: ["review.max_comment": .int(5)], locks: [])
            Issue.record("expected an error")
        } catch let e as PolicySettingsError {
            #expect(e.key == "review.max_comment")
            #expect(e.description == "review.max_comment: unknown key 'review.max_comment' (did you mean 'review.max_comments'?)")
        }
        do {
            try WorkspaceSettingsValidator.validate(values: ["review.enabled": .string("yes")], locks: [])
            Issue.record("expected an error")
        } catch let e as PolicySettingsError {
            #expect(e.key == "review.enabled")
            #expect(e.message == "expected a boolean (true or false), found a string")
        }
        let problems = WorkspaceSettingsValidator.problems(
            values: ["review.max_comments": .int(201), "review.paths.exclude": .list(["[x"]), "review.event": .string("approve")],
            locks: ["review.bogus"])
        #expect(problems.map(\.key) == ["review.bogus", "review.event", "review.max_comments", "review.paths.exclude"])
        #expect(problems[2].message == "201 is out of range (0...200)")
    }
}
