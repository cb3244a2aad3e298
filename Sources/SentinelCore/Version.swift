public enum SentinelVersion { public static let current = "0.1.0" }
