import Testing
import Foundation
import SentinelCore

/// Every layer × set/unset × locked/unlocked (locks only at workspace and repository, the layers
/// that can lock) for one scalar key, with the expected effective value, source, lock and
/// violations stated per case.
///
/// Case codes: one letter per layer, upper case = the layer sets the key, lower case = it does
/// not; "!" after W or R = that layer locks the key.
///   B/b builtin input sets review.max_comments = 10 (otherwise the built-in default 25 applies)
///   W/w workspace sets 20          R/r repository sets 30          F/f .sentinel.yml sets 40
@Suite("Precedence matrix")
struct PrecedenceMatrixTests {
    struct Expected: Sendable {
        let value: Int
        let source: PolicyLayer
        let lockedBy: PolicyLayer?
        let violations: [PolicyLayer]
        init(_ value: Int, _ source: PolicyLayer, lockedBy: PolicyLayer?, violations: [PolicyLayer]) {
            self.value = value
            self.source = source
            self.lockedBy = lockedBy
            self.violations = violations
        }
    }

    static let key = "review.max_comments"

    /// The expected result of every case.
    static let expected: [String: Expected] = [
        "BWRF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "BWRf": .init(30, .repository, lockedBy: nil, violations: []),
        "BWR!F": .init(30, .repository, lockedBy: .repository, violations: [.repositoryFile]),
        "BWR!f": .init(30, .repository, lockedBy: .repository, violations: []),
        "BWrF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "BWrf": .init(20, .workspace, lockedBy: nil, violations: []),
        "BWr!F": .init(20, .workspace, lockedBy: .repository, violations: [.repositoryFile]),
        "BWr!f": .init(20, .workspace, lockedBy: .repository, violations: []),
        "BW!RF": .init(20, .workspace, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "BW!Rf": .init(20, .workspace, lockedBy: .workspace, violations: [.repository]),
        "BW!R!F": .init(20, .workspace, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "BW!R!f": .init(20, .workspace, lockedBy: .workspace, violations: [.repository]),
        "BW!rF": .init(20, .workspace, lockedBy: .workspace, violations: [.repositoryFile]),
        "BW!rf": .init(20, .workspace, lockedBy: .workspace, violations: []),
        "BW!r!F": .init(20, .workspace, lockedBy: .workspace, violations: [.repositoryFile]),
        "BW!r!f": .init(20, .workspace, lockedBy: .workspace, violations: []),
        "BwRF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "BwRf": .init(30, .repository, lockedBy: nil, violations: []),
        "BwR!F": .init(30, .repository, lockedBy: .repository, violations: [.repositoryFile]),
        "BwR!f": .init(30, .repository, lockedBy: .repository, violations: []),
        "BwrF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "Bwrf": .init(10, .builtin, lockedBy: nil, violations: []),
        "Bwr!F": .init(10, .builtin, lockedBy: .repository, violations: [.repositoryFile]),
        "Bwr!f": .init(10, .builtin, lockedBy: .repository, violations: []),
        "Bw!RF": .init(10, .builtin, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "Bw!Rf": .init(10, .builtin, lockedBy: .workspace, violations: [.repository]),
        "Bw!R!F": .init(10, .builtin, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "Bw!R!f": .init(10, .builtin, lockedBy: .workspace, violations: [.repository]),
        "Bw!rF": .init(10, .builtin, lockedBy: .workspace, violations: [.repositoryFile]),
        "Bw!rf": .init(10, .builtin, lockedBy: .workspace, violations: []),
        "Bw!r!F": .init(10, .builtin, lockedBy: .workspace, violations: [.repositoryFile]),
        "Bw!r!f": .init(10, .builtin, lockedBy: .workspace, violations: []),
        "bWRF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "bWRf": .init(30, .repository, lockedBy: nil, violations: []),
        "bWR!F": .init(30, .repository, lockedBy: .repository, violations: [.repositoryFile]),
        "bWR!f": .init(30, .repository, lockedBy: .repository, violations: []),
        "bWrF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "bWrf": .init(20, .workspace, lockedBy: nil, violations: []),
        "bWr!F": .init(20, .workspace, lockedBy: .repository, violations: [.repositoryFile]),
        "bWr!f": .init(20, .workspace, lockedBy: .repository, violations: []),
        "bW!RF": .init(20, .workspace, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "bW!Rf": .init(20, .workspace, lockedBy: .workspace, violations: [.repository]),
        "bW!R!F": .init(20, .workspace, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "bW!R!f": .init(20, .workspace, lockedBy: .workspace, violations: [.repository]),
        "bW!rF": .init(20, .workspace, lockedBy: .workspace, violations: [.repositoryFile]),
        "bW!rf": .init(20, .workspace, lockedBy: .workspace, violations: []),
        "bW!r!F": .init(20, .workspace, lockedBy: .workspace, violations: [.repositoryFile]),
        "bW!r!f": .init(20, .workspace, lockedBy: .workspace, violations: []),
        "bwRF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "bwRf": .init(30, .repository, lockedBy: nil, violations: []),
        "bwR!F": .init(30, .repository, lockedBy: .repository, violations: [.repositoryFile]),
        "bwR!f": .init(30, .repository, lockedBy: .repository, violations: []),
        "bwrF": .init(40, .repositoryFile, lockedBy: nil, violations: []),
        "bwrf": .init(25, .builtin, lockedBy: nil, violations: []),
        "bwr!F": .init(25, .builtin, lockedBy: .repository, violations: [.repositoryFile]),
        "bwr!f": .init(25, .builtin, lockedBy: .repository, violations: []),
        "bw!RF": .init(25, .builtin, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "bw!Rf": .init(25, .builtin, lockedBy: .workspace, violations: [.repository]),
        "bw!R!F": .init(25, .builtin, lockedBy: .workspace, violations: [.repository, .repositoryFile]),
        "bw!R!f": .init(25, .builtin, lockedBy: .workspace, violations: [.repository]),
        "bw!rF": .init(25, .builtin, lockedBy: .workspace, violations: [.repositoryFile]),
        "bw!rf": .init(25, .builtin, lockedBy: .workspace, violations: []),
        "bw!r!F": .init(25, .builtin, lockedBy: .workspace, violations: [.repositoryFile]),
        "bw!r!f": .init(25, .builtin, lockedBy: .workspace, violations: []),
    ]

    struct Case: Sendable, CustomTestStringConvertible {
        let builtinSet, workspaceSet, workspaceLock, repositorySet, repositoryLock, fileSet: Bool

        var code: String {
            (builtinSet ? "B" : "b") + (workspaceSet ? "W" : "w") + (workspaceLock ? "!" : "")
                + (repositorySet ? "R" : "r") + (repositoryLock ? "!" : "") + (fileSet ? "F" : "f")
        }
        var testDescription: String { code }

        var layers: [LayerInput] {
            let k = PrecedenceMatrixTests.key
            return [
                LayerInput(layer: .builtin, values: builtinSet ? [k: .int(10)] : [:]),
                LayerInput(layer: .workspace, values: workspaceSet ? [k: .int(20)] : [:],
                           locks: workspaceLock ? [k] : [], versionID: "ws-v1"),
                LayerInput(layer: .repository, values: repositorySet ? [k: .int(30)] : [:],
                           locks: repositoryLock ? [k] : [], versionID: "repo-v1"),
                LayerInput(layer: .repositoryFile, values: fileSet ? [k: .int(40)] : [:], versionID: "abc123"),
            ]
        }
    }

    /// All 2 × 4 × 4 × 2 = 64 combinations, generated.
    static let cases: [Case] = {
        var out: [Case] = []
        for b in [true, false] {
            for w in [true, false] {
                for wl in [false, true] {
                    for r in [true, false] {
                        for rl in [false, true] {
                            for f in [true, false] {
                                out.append(Case(builtinSet: b, workspaceSet: w, workspaceLock: wl,
                                                repositorySet: r, repositoryLock: rl, fileSet: f))
                            }
                        }
                    }
                }
            }
        }
        return out
    }()

    @Test func tableCoversEveryCase() {
        #expect(Self.cases.count == 64)
        #expect(Set(Self.cases.map(\.code)) == Set(Self.expected.keys))
    }

    @Test(arguments: cases)
    func precedence(_ c: Case) throws {
        let want = try #require(Self.expected[c.code])
        let policy = PolicyResolver.resolve(c.layers)
        let entry = try #require(policy.entry(for: Self.key))
        #expect(policy.values[Self.key] == .int(want.value), "\(c.code)")
        #expect(entry.value == .int(want.value), "\(c.code)")
        #expect(entry.source == want.source, "\(c.code)")
        #expect(entry.locked == (want.lockedBy != nil), "\(c.code)")
        #expect(entry.lockedBy == want.lockedBy, "\(c.code)")
        #expect(policy.violations.map(\.attemptedBy) == want.violations, "\(c.code)")
        for v in policy.violations {
            #expect(v.key == Self.key)
            #expect(v.lockedBy == want.lockedBy)
            #expect(v.lockedValue == .int(want.value))
            let attempted: Int = v.attemptedBy == .repository ? 30 : 40
            #expect(v.attemptedValue == .int(attempted))
        }
        // Locks never leak to other keys, and nothing was rejected.
        #expect(policy.entries.filter(\.locked).map(\.key) == (want.lockedBy == nil ? [] : [Self.key]))
        #expect(policy.rejected.isEmpty)
        // Input order does not matter.
        #expect(PolicyResolver.resolve(c.layers.reversed()) == policy)
    }

    /// The same matrix with the file layer also trying to lock the key: file locks are ignored
    /// (and reported), so every result is unchanged.
    @Test(arguments: cases)
    func fileLocksAreIgnored(_ c: Case) throws {
        let want = try #require(Self.expected[c.code])
        var layers = c.layers
        layers[3].locks = [Self.key]
        let policy = PolicyResolver.resolve(layers)
        let entry = try #require(policy.entry(for: Self.key))
        #expect(entry.value == .int(want.value))
        #expect(entry.source == want.source)
        #expect(entry.lockedBy == want.lockedBy)
        #expect(policy.violations.map(\.attemptedBy) == want.violations)
        #expect(policy.rejected.map(\.layer) == [.repositoryFile])
    }
}
