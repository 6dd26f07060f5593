import SigiloCrypto

public extension SecureAggregation {
    /// The coordinator's last step of a secure round: removes every mask from
    /// the survivors' summed inputs, leaving the sum of their grid releases.
    ///
    /// - `shared`: the tenants whose shares were relayed (the ones the
    ///   survivors masked with); `survivors`: those whose masked input is in
    ///   `sum`; `revealed`: each holder's answer to the unmask stage.
    ///
    /// For every survivor its seed is recovered from `shareThreshold` seed
    /// shares and its self mask taken off; for every tenant that shared but
    /// sent no input, its mask key is recovered from key shares and the
    /// pairwise masks its surviving neighbours added with it taken off. Each
    /// recovered secret is checked against what its owner signed (the seed's
    /// commitment, the mask key's public half), so a wrong share is named
    /// instead of silently corrupting the model. Refuses when a secret cannot
    /// be recovered: the round must then be abandoned, releasing nothing.
    static func unmask(_ sum: inout MaskedSum, parameters p: RoundParameters, advertisements: [String: Advertisement],
                       shared: Set<String>, survivors: Set<String>, revealed: [String: [RevealedShare]]) throws {
        guard survivors.count >= p.threshold else {
            throw SecureAggregationError("\(survivors.count) masked inputs, below the threshold of \(p.threshold)")
        }
        guard survivors.isSubset(of: shared) else { throw SecureAggregationError("a survivor never shared its secrets") }
        var stream = [UInt64](repeating: 0, count: sum.values.count)
        for owner in shared.sorted(by: precedes) {
            guard let ad = advertisements[owner] else { throw SecureAggregationError("no advertised keys for \(owner)") }
            let survived = survivors.contains(owner)
            let secret = try recover(owner, kind: survived ? .seed : .key, parameters: p, revealed: revealed)
            if survived {
                guard seedCommitment(secret) == ad.seedCommitment else {
                    throw SecureAggregationError("\(owner)'s recovered seed does not match its commitment: a holder revealed a wrong share")
                }
                try selfMask(secret, parameters: p, into: &stream)
                sum.subtract(stream)
                continue
            }
            let key = try X25519.KeyPair(privateKey: secret)
            guard key.publicKey == ad.maskKey else {
                throw SecureAggregationError("\(owner)'s recovered mask key does not match its advertised one: a holder revealed a wrong share")
            }
            // Each surviving neighbour added (or subtracted) the pair's mask; take it back off.
            for neighbour in try p.neighbours(of: owner) where survivors.contains(neighbour) {
                guard let theirs = advertisements[neighbour] else { throw SecureAggregationError("no advertised keys for \(neighbour)") }
                try mask(secret: key.sharedSecret(with: theirs.maskKey), between: neighbour, and: owner, round: p.round,
                         modelVersion: p.modelVersion, into: &stream)
                if precedes(neighbour, owner) { sum.subtract(stream) } else { sum.add(stream: stream) }
            }
        }
    }

    /// `owner`'s seed or mask key from the shares its neighbours revealed.
    static func recover(_ owner: String, kind: RevealedShare.Kind, parameters p: RoundParameters, revealed: [String: [RevealedShare]]) throws -> [UInt8] {
        let holders = try p.neighbours(of: owner)
        let shares = holders.compactMap { holder in revealed[holder]?.first { $0.owner == owner && $0.kind == kind }?.share }
        guard shares.count >= p.shareThreshold else {
            throw SecureAggregationError("\(owner)'s \(kind == .seed ? "seed" : "mask key") cannot be recovered: \(shares.count) of the \(p.shareThreshold) shares needed were revealed")
        }
        do { return try ShamirSharing.combine(shares, threshold: p.shareThreshold, secretBytes: 32) } catch {
            throw SecureAggregationError("\(owner)'s shares do not combine: \(error)")
        }
    }
}
