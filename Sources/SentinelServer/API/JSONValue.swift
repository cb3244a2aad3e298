import Foundation
import SentinelCore

extension JSONValue {
    /// What a YAML loader produced (`Yams.load`): mappings, sequences and resolved scalars.
    init(yaml: Any?) {
        switch yaml {
        case nil, is NSNull: self = .null
        case let b as Bool: self = .bool(b)
        case let i as Int: self = .int(i)
        case let d as Double: self = .double(d)
        case let s as String: self = .string(s)
        case let a as [Any]: self = .array(a.map { JSONValue(yaml: $0) })
        case let o as [String: Any]: self = .object(o.mapValues { JSONValue(yaml: $0) })
        case let o as [AnyHashable: Any]: self = .object(Dictionary(o.map { ("\($0.key)", JSONValue(yaml: $0.value)) }) { a, _ in a })
        default: self = .string("\(yaml ?? "")")
        }
    }
}
