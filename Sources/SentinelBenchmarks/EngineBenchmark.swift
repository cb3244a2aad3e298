import ArgumentParser
import Foundation
import SentinelCore

/// One review of a large PR (300 files, 30,000 changed lines) through the engine with a
/// zero-latency model: the engine's own cost, without any provider time.
struct EngineBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "engine", abstract: "Review-engine overhead on a large PR.")
    @Option(help: "Files in the PR.") var files = 300
    @Option(help: "Changed lines per file.") var linesPerFile = 100
    @Option(help: "Repetitions (the first is a warm-up).") var repetitions = 6

    struct InstantModel: ReviewModel {
        func complete(_ prompt: ReviewPrompt) async throws -> ModelReply {
            // Cite the first line of the first file in the chunk, like a model that found one issue per chunk.
            // Found with a byte scan: the fake provider's own cost must not count as the engine's.
            let bytes = Array(prompt.user.utf8.prefix(64 * 1024))
            let marker = Array("### File: ".utf8)
            var path = "src/file0.swift"
            if let start = (0...(bytes.count - marker.count)).first(where: { bytes[$0..<($0 + marker.count)].elementsEqual(marker) }) {
                let rest = bytes[(start + marker.count)...]
                path = String(decoding: rest.prefix { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\n") }, as: UTF8.self)
            }
            let text = #"{"summary":"ok","findings":[{"path":"\#(path)","start_line":null,"line":2,"side":"RIGHT","severity":"medium","category":"style","title":"t","body":"b","suggestion":null}]}"#
            return ModelReply(text: text, usage: TokenUsage(inputTokens: prompt.estimatedTokens, outputTokens: 50), provider: "bench", model: "instant")
        }
    }

    func makeDiff() -> String {
        var diff = ""
        for f in 0..<files {
            diff += "diff --git a/src/file\(f).swift b/src/file\(f).swift\n--- a/src/file\(f).swift\n+++ b/src/file\(f).swift\n"
            let hunks = max(1, linesPerFile / 25)
            for h in 0..<hunks {
                let start = h * 40 + 1
                diff += "@@ -\(start),25 +\(start),25 @@ func f\(h)()\n"
                for l in 0..<25 {
                    if l % 2 == 0 {
                        diff += "-    let value\(l) = compute(\(l), \(f))\n"
                        diff += "+    let value\(l) = computeFaster(\(l), \(f), cache: cache)\n"
                    } else {
                        diff += " // unchanged line \(l) of hunk \(h)\n"
                    }
                }
            }
        }
        return diff
    }

    func run() async throws {
        let text = makeDiff()
        var parseTimes: [Double] = []
        var reviewTimes: [Double] = []
        var changed = 0
        var findings = 0
        for i in 0..<repetitions {
            let t0 = ContinuousClock.now
            let parsed = try UnifiedDiff.parse(text)
            let t1 = ContinuousClock.now
            let result = await ReviewEngine.review(files: parsed, options: ReviewOptions(maxComments: 50), model: InstantModel())
            let t2 = ContinuousClock.now
            if i > 0 { parseTimes.append((t1 - t0).seconds); reviewTimes.append((t2 - t1).seconds) }
            changed = parsed.reduce(0) { $0 + $1.additions + $1.deletions }
            findings = result.findings.count
        }
        let peak = peakResidentMemoryMiB()
        let median = { (v: [Double]) in v.sorted()[v.count / 2] }
        print("| files | changed lines | parse (median) | review (median) | total | findings kept | peak RSS |")
        print("|---|---|---|---|---|---|---|")
        print("| \(files) | \(changed) | \(ms(median(parseTimes))) | \(ms(median(reviewTimes))) | \(ms(median(parseTimes) + median(reviewTimes))) | \(findings) | \(String(format: "%.0f", peak)) MiB |")
    }
}

func peakResidentMemoryMiB() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }) else { return -1 }
    return (Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0) / 1024
}
