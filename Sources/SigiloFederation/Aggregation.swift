import Foundation
import SigiloModel
import SigiloPrivacy

/// The running sum of a round: each accepted update is added once and then
/// forgotten, so memory is one vector whatever the number of tenants, and no
/// individual update is ever kept.
public struct RoundSum: Sendable, Equatable {
    public private(set) var values: [Float]
    public private(set) var weight: Double
    public private(set) var count: Int

    public init(dimension: Int) {
        values = [Float](repeating: 0, count: dimension)
        weight = 0
        count = 0
    }

    public init(values: [Float], weight: Double, count: Int) {
        self.values = values
        self.weight = weight
        self.count = count
    }

    /// Adds one validated update.
    public mutating func add(_ update: [Float], weight w: Double) {
        add(update, scale: 1, weight: w)
    }

    /// Adds `scale` times an update (a clipping factor, for instance).
    public mutating func add(_ update: [Float], scale: Float, weight w: Double) {
        precondition(update.count == values.count)
        values.withUnsafeMutableBufferPointer { sum in
            update.withUnsafeBufferPointer { u in Vector.axpy(scale, u.baseAddress!, sum.baseAddress!, u.count) }
        }
        weight += w
        count += 1
    }

    /// The L2 norm of an update (float lanes, summed in double at the end).
    public static func norm(_ update: [Float]) -> Double {
        update.withUnsafeBufferPointer { u in
            var acc = SIMD8<Float>(repeating: 0)
            let n = u.count
            let ru = UnsafeRawPointer(u.baseAddress!)
            var i = 0
            var total = 0.0
            while i + 8 <= n {
                let v = ru.loadUnaligned(fromByteOffset: i * 4, as: SIMD8<Float>.self)
                acc += v * v
                i += 8
                if i % 8192 == 0 { total += Double(acc.sum()); acc = .init(repeating: 0) } // bound float error
            }
            total += Double(acc.sum())
            while i < n { total += Double(u[i]) * Double(u[i]); i += 1 }
            return total.squareRoot()
        }
    }
}

/// The bound no honest update's L2 norm can exceed: every declared customer
/// sampled and clipped to C, plus the tenant's noise (z·C per coordinate)
/// beyond 10 standard deviations of its norm.
public func updateNormBound(population: Double, clipNorm: Double, noiseMultiplier: Double, tenantNoised: Bool, dimension: Int) -> Double {
    let signal = population * clipNorm
    guard tenantNoised else { return signal * (1 + 1e-6) }
    let sigma = noiseMultiplier * clipNorm
    return signal + sigma * (Double(dimension).squareRoot() + 10)
}

/// The server optimiser's step: model <- model + step(average update).
public struct ServerOptimizerState: Sendable, Equatable {
    /// Empty until an optimiser that keeps a moment first steps (plain
    /// FedAvg keeps none, FedAvgM only the first): empty means all zeros, so
    /// no unused 4 x d bytes are allocated, stored or rewritten each round.
    public private(set) var momentum: [Float]
    public private(set) var secondMoment: [Float]

    /// Zero moments, of whatever length the model has.
    public init() {
        momentum = []
        secondMoment = []
    }

    public init(momentum: [Float], secondMoment: [Float]) {
        self.momentum = momentum
        self.secondMoment = secondMoment
    }

    /// Applies `average` (the round's mean update) to `model` per `settings`.
    public mutating func apply(_ average: [Float], to model: inout [Float], settings: Plan.ServerOptimizer) {
        let lr = Float(settings.learningRate)
        // A moment of another length belongs to another model shape: start it again.
        func zeroedIfStale(_ moment: inout [Float]) {
            if moment.count != model.count { moment = [Float](repeating: 0, count: model.count) }
        }
        switch settings.kind {
        case .fedavg:
            for i in model.indices { model[i] += lr * average[i] }
        case .fedavgm:
            zeroedIfStale(&momentum)
            let beta = Float(settings.momentum)
            for i in model.indices {
                momentum[i] = beta * momentum[i] + average[i]
                model[i] += lr * momentum[i]
            }
        case .fedadam:
            zeroedIfStale(&momentum)
            zeroedIfStale(&secondMoment)
            let b1 = Float(settings.momentum), b2 = Float(settings.beta2), tau = Float(settings.epsilon)
            for i in model.indices {
                momentum[i] = b1 * momentum[i] + (1 - b1) * average[i]
                secondMoment[i] = b2 * secondMoment[i] + (1 - b2) * average[i] * average[i]
                model[i] += lr * momentum[i] / (secondMoment[i].squareRoot() + tau)
            }
        }
    }
}

/// Closing a round: central noise if the plan says so, division by the
/// expected number of sampled customers (never the observed count), the
/// bias coordinates dropped (the bias is not federated: see `LocalRound`;
/// honest updates leave them at zero, so they hold only noise), then the
/// server optimiser's step. Returns the new model vector.
public func closeRound(sum: RoundSum, model: [Float], plan: Plan, optimizer: inout ServerOptimizerState,
                       centralNoise: (inout [Float]) throws -> Void) throws -> [Float] {
    var total = sum.values
    if plan.placement == .central { try centralNoise(&total) }
    // With no expected customers there is nothing to average: the model stays.
    guard sum.weight > 0 else { return model }
    let scale = Float(1 / sum.weight)
    var average = total
    for i in average.indices { average[i] *= scale }
    for i in (average.count - plan.labels.count)..<average.count { average[i] = 0 }
    var next = model
    optimizer.apply(average, to: &next, settings: plan.serverOptimizer)
    return next
}
