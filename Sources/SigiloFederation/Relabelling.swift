/// How a new plan's labels follow from the labels of the model in force
/// (protocol/PLAN.md, "Changing a plan"). Every old intent must go somewhere:
/// kept under its name, or named in `formerLabels` with the label that takes
/// its place. Nothing is dropped, since a dropped intent's messages would stop
/// training anything without anyone having said so.
public struct Relabelling: Sendable {
    /// For each of the new plan's labels, the indices of the old labels its class is made from.
    public let sources: [[Int]]
    /// Labels with no source: they start from zero.
    public let added: [String]
    /// Old label, new label: one old intent under a new name.
    public let renamed: [(String, String)]
    /// New label, the old labels it merges (two or more).
    public let merged: [(String, [String])]

    /// Nil when `plan` keeps `old` exactly; throws, naming the label, when an old intent has nowhere to go.
    public init?(from old: [String], to plan: Plan) throws {
        guard old != plan.labels else { return nil }
        let index = Dictionary(uniqueKeysWithValues: plan.labels.enumerated().map { ($1, $0) })
        var sources = [[Int]](repeating: [], count: plan.labels.count)
        for (i, label) in old.enumerated() {
            guard let target = index[label] ?? plan.formerLabels?[label].flatMap({ index[$0] }) else {
                throw PlanError("labels: \"\(label)\" is missing; an intent is never dropped: keep it, or name the label that takes its place in formerLabels (\"\(label)\": \"...\")")
            }
            sources[target].append(i)
        }
        self.sources = sources
        added = plan.labels.indices.filter { sources[$0].isEmpty }.map { plan.labels[$0] }
        renamed = plan.labels.indices.filter { sources[$0].count == 1 && old[sources[$0][0]] != plan.labels[$0] }
            .map { (old[sources[$0][0]], plan.labels[$0]) }
        merged = plan.labels.indices.filter { sources[$0].count > 1 }.map { (plan.labels[$0], sources[$0].map { old[$0] }) }
    }

    /// For the audit log: what changed, in words.
    public var summary: String {
        var parts = [String]()
        if !added.isEmpty { parts.append("added \(added.joined(separator: ", ")) (zero weights)") }
        if !renamed.isEmpty { parts.append("renamed " + renamed.map { "\($0) to \($1)" }.joined(separator: ", ")) }
        if !merged.isEmpty { parts.append("merged " + merged.map { "\($1.joined(separator: " + ")) into \($0) (mean of their weights)" }.joined(separator: ", ")) }
        return parts.isEmpty ? "labels reordered" : parts.joined(separator: "; ")
    }
}
