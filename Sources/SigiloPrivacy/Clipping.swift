/// Per-customer L2 clipping over the whole update (every tensor, bias included).
public enum Clipping {
    /// The L2 norm of all values together, accumulated in double precision.
    /// Non-finite values are an error, never silently clipped.
    public static func norm(_ tensors: [[Float]]) throws -> Double {
        var sum = 0.0
        for (t, tensor) in tensors.enumerated() {
            for (i, v) in tensor.enumerated() {
                guard v.isFinite else { throw PrivacyParameterError("update tensor \(t) value \(i) is not finite (\(v))") }
                sum += Double(v) * Double(v)
            }
        }
        return sum.squareRoot()
    }

    /// Scales every tensor by min(1, C / norm) in place; returns the norm before clipping.
    @discardableResult
    public static func clip(_ tensors: inout [[Float]], to clipNorm: Double) throws -> Double {
        guard clipNorm.isFinite, clipNorm > 0 else { throw PrivacyParameterError("clip norm must be a finite number > 0, got \(clipNorm)") }
        let n = try norm(tensors)
        guard n > clipNorm else { return n }
        let scale = Float(clipNorm / n)
        for t in tensors.indices { for i in tensors[t].indices { tensors[t][i] *= scale } }
        // Float rounding can leave the norm a hair above C; shrink by one ulp-scale step if so.
        if try norm(tensors) > clipNorm {
            let fix = Float(clipNorm / (try norm(tensors))).nextDown
            for t in tensors.indices { for i in tensors[t].indices { tensors[t][i] *= fix } }
        }
        return n
    }
}
