public extension SecureAggregation {
    /// A secure round as one tenant is told of it at its current stage
    /// (protocol/PROTOCOL.md, `GET /v1/rounds/current`, "secure"): what it
    /// needs for its next step, and nothing about tenants it does not neighbour
    /// but their ids.
    struct RoundView: Sendable, Equatable {
        public typealias Stage = RoundMachine.SecureStages.Stage

        public var parameters: RoundParameters
        public var stage: Stage
        public var stageDeadline: Double
        /// Its neighbours that advertised keys, as they signed them (from the share stage on).
        public var neighbours: [Advertisement]
        /// Those of them that sent their shares (from the mask stage on): the ones it masks with.
        public var sharedNeighbours: [String]
        /// Every tenant whose masked input is in the sum (unmask stage).
        public var survivors: [String]
        /// The shares its neighbours encrypted to it (unmask stage).
        public var shares: [EncryptedShare]

        public init(parameters: RoundParameters, stage: Stage, stageDeadline: Double, neighbours: [Advertisement] = [],
                    sharedNeighbours: [String] = [], survivors: [String] = [], shares: [EncryptedShare] = []) {
            self.parameters = parameters
            self.stage = stage
            self.stageDeadline = stageDeadline
            self.neighbours = neighbours
            self.sharedNeighbours = sharedNeighbours
            self.survivors = survivors
            self.shares = shares
        }

        /// The advertisements of the neighbours it masks with.
        public var maskedWith: [Advertisement] {
            let shared = Set(sharedNeighbours)
            return neighbours.filter { shared.contains($0.tenant) }
        }
    }
}
