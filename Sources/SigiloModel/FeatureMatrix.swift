import SigiloText

/// Rows of sparse feature vectors in compressed-sparse-row form: one
/// contiguous allocation for all indices and values, which keeps training
/// loops free of per-row arrays.
public struct FeatureMatrix: Sendable {
    public private(set) var offsets: [Int] = [0]
    public private(set) var indices: [Int32] = []
    public private(set) var values: [Float] = []

    public init() {}

    public init(_ rows: some Sequence<SparseVector>) {
        for row in rows { append(row) }
    }

    public var rowCount: Int { offsets.count - 1 }

    public mutating func append(_ row: SparseVector) {
        indices.append(contentsOf: row.indices)
        values.append(contentsOf: row.values)
        offsets.append(indices.count)
    }

    public func row(_ r: Int) -> SparseVector {
        let range = offsets[r]..<offsets[r + 1]
        return SparseVector(indices: Array(indices[range]), values: Array(values[range]))
    }

    /// The rows at `rows`, in that order.
    public func subset(_ rows: some Sequence<Int>) -> FeatureMatrix {
        var out = FeatureMatrix()
        for r in rows {
            let range = offsets[r]..<offsets[r + 1]
            out.indices.append(contentsOf: indices[range])
            out.values.append(contentsOf: values[range])
            out.offsets.append(out.indices.count)
        }
        return out
    }
}
