/// Exact binary digits of e^(-i/128), and the coin "u < e^(-i/128)" for a
/// uniform u read word by word.
///
/// A coin with a transcendental probability is exact when the uniform is
/// compared with the probability's binary expansion digit by digit: the
/// first 64-bit word decides unless it equals the expansion's first word
/// (probability 2^-64); then the next words decide, computed on demand. The
/// first words sit in a table; later words come from the alternating Taylor
/// series evaluated in fixed point with a proven error bound, so every digit
/// handed out is the true digit, never a rounded one.
enum ExpMinusDigits {
    /// The coin's unit: probabilities are e^(-ticks/128).
    static let ticksPerUnit = 128
    /// The table covers e^(-x) for x in [0, 4).
    static let tableTicks = 4 * ticksPerUnit

    /// firstWords[i] = ⌊e^(-i/128) · 2^64⌋ for 1 <= i < 512 (entry 0 is unused: e^0 = 1).
    static let firstWords: [UInt64] = (0..<tableTicks).map { $0 == 0 ? .max : fractionWords(ticks: $0, count: 1)[0] }

    /// The first `count` 64-bit words of the binary fraction e^(-ticks/128), exactly
    /// (⌊e^(-ticks/128) · 2^(64·count)⌋, most significant word first), for ticks >= 1.
    static func fractionWords(ticks: Int, count: Int) -> [UInt64] {
        precondition(ticks >= 1 && ticks < tableTicks && count >= 1)
        var guardWords = 1
        while true {
            let (value, error) = series(ticks: UInt64(ticks), fractionWords: count + guardWords)
            // The true value lies in [value - error, value + error] (units of the last word).
            let low = subtracting(value, small: error), high = adding(value, small: error)
            // Both ends share the first `count` fraction words: those are the exact digits.
            if low[0...count] == high[0...count] { return Array(low[1...count]) }
            guardWords += 1 // the value sits within the error of a digit boundary: more precision
        }
    }

    /// e^(-t/128) in fixed point (word 0 the integer part, then `fractionWords`
    /// words), and a bound on the absolute error in units of the last word.
    ///
    /// Terms are t_k = t_(k-1) · t / (128k). Multiplying by t is exact and
    /// dividing truncates by less than one unit, so term k's error e_k obeys
    /// e_k <= (x/k)·e_(k-1) + 1 with x = t/128 < 4. The bound returned covers
    /// every summed term's error and the tail after the first vanished term.
    private static func series(ticks t: UInt64, fractionWords: Int) -> (value: [UInt64], error: UInt64) {
        var term = [UInt64](repeating: 0, count: fractionWords + 1)
        term[0] = 1
        var positive = term, negative = [UInt64](repeating: 0, count: fractionWords + 1)
        var termError: Double = 0, totalError: Double = 0
        let x = Double(t) / Double(ticksPerUnit)
        var k: UInt64 = 1
        while true {
            multiply(&term, by: t)
            divide(&term, by: UInt64(ticksPerUnit) * k)
            termError = termError * x / Double(k) + 1
            if term.allSatisfy({ $0 == 0 }) { break }
            totalError += termError
            if k & 1 == 1 { add(&negative, term) } else { add(&positive, term) }
            k += 1
        }
        // The tail: the vanished term's true value is at most termError units.
        // It vanished below 2^-128, so k > 2x (for k <= 2x < 8 the term is at
        // least (k/2)^k/k! > 2^-128), and from there each term is under half
        // the one before: the whole tail is below twice the vanished term.
        totalError += 2 * termError
        let bound = UInt64((totalError * 2).rounded(.up)) + 2 // float rounding of the bound itself
        return (subtract(positive, negative), bound)
    }

    /// The coin [u < e^(-ticks/128)] for a uniform u whose first 64-bit word
    /// `first` equalled the table's first word: later words of u against later
    /// words of the expansion, until they differ.
    static func resolveTie<R: RandomNumberGenerator>(ticks: Int, using generator: inout R) -> Bool {
        var count = 2
        while true {
            let digits = fractionWords(ticks: ticks, count: count)
            let word = generator.next()
            if word != digits[count - 1] { return word < digits[count - 1] }
            count += 1
        }
    }

    // Fixed-point arithmetic on big-endian word arrays of equal length.

    private static func multiply(_ a: inout [UInt64], by m: UInt64) {
        var carry: UInt64 = 0
        for i in a.indices.reversed() {
            let (high, low) = a[i].multipliedFullWidth(by: m)
            let (sum, overflow) = low.addingReportingOverflow(carry)
            a[i] = sum
            carry = high &+ (overflow ? 1 : 0)
        }
        precondition(carry == 0, "fixed-point overflow")
    }

    private static func divide(_ a: inout [UInt64], by m: UInt64) {
        var remainder: UInt64 = 0
        for i in a.indices {
            let (quotient, rest) = m.dividingFullWidth((remainder, a[i]))
            a[i] = quotient
            remainder = rest
        }
    }

    private static func add(_ a: inout [UInt64], _ b: [UInt64]) {
        var carry = false
        for i in a.indices.reversed() {
            let (s1, o1) = a[i].addingReportingOverflow(b[i])
            let (s2, o2) = s1.addingReportingOverflow(carry ? 1 : 0)
            a[i] = s2
            carry = o1 || o2
        }
        precondition(!carry, "fixed-point overflow")
    }

    private static func subtract(_ a: [UInt64], _ b: [UInt64]) -> [UInt64] {
        var result = a
        var borrow = false
        for i in result.indices.reversed() {
            let (d1, o1) = result[i].subtractingReportingOverflow(b[i])
            let (d2, o2) = d1.subtractingReportingOverflow(borrow ? 1 : 0)
            result[i] = d2
            borrow = o1 || o2
        }
        precondition(!borrow, "negative fixed-point value")
        return result
    }

    private static func adding(_ a: [UInt64], small: UInt64) -> [UInt64] {
        var b = [UInt64](repeating: 0, count: a.count)
        b[b.count - 1] = small
        var result = a
        add(&result, b)
        return result
    }

    private static func subtracting(_ a: [UInt64], small: UInt64) -> [UInt64] {
        var b = [UInt64](repeating: 0, count: a.count)
        b[b.count - 1] = small
        return subtract(a, b)
    }
}
