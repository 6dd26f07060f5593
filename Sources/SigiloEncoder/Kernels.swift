/// The encoder's numeric inner loops, on raw pointers and SIMD8 lanes. This
/// module is compiled for AVX2 and FMA on x86-64 (Package.swift), where an
/// `addingProduct` of SIMD8<Float> is one fused multiply-add instruction.
enum Kernels {
    typealias Lanes = SIMD8<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> Lanes {
        UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
    }

    @inline(__always) static func store(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
    }

    /// `y[r][c] = bias[c] + sum_i x[r][i] * w[i][c]` for `rows` x `columns`,
    /// `w` row-major `[inner][columns]`; `columns` must be a multiple of 8.
    /// Panels of 24 columns by 4 rows keep 12 accumulators in registers, and
    /// each 24-column panel of `w` stays in cache while every row passes over it.
    static func matmul(_ x: UnsafePointer<Float>, rows: Int, inner: Int, _ w: UnsafePointer<Float>, columns: Int,
                       bias: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>) {
        precondition(columns % 8 == 0)
        var column = 0
        while column + 24 <= columns {
            var row = 0
            while row + 4 <= rows {
                panel4x24(x + row * inner, inner, w + column, columns, bias + column, y + row * columns + column, columns)
                row += 4
            }
            while row < rows {
                for c in stride(from: column, to: column + 24, by: 8) { strip(x + row * inner, inner, w + c, columns, bias + c, y + row * columns + c) }
                row += 1
            }
            column += 24
        }
        while column < columns {
            for row in 0..<rows { strip(x + row * inner, inner, w + column, columns, bias + column, y + row * columns + column) }
            column += 8
        }
    }

    @inline(__always)
    private static func panel4x24(_ x: UnsafePointer<Float>, _ inner: Int, _ w: UnsafePointer<Float>, _ ldw: Int,
                                  _ bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ ldy: Int) {
        let b0 = load(bias), b1 = load(bias + 8), b2 = load(bias + 16)
        var (a00, a01, a02, a10, a11, a12) = (b0, b1, b2, b0, b1, b2)
        var (a20, a21, a22, a30, a31, a32) = (b0, b1, b2, b0, b1, b2)
        let x0 = x, x1 = x + inner, x2 = x + 2 * inner, x3 = x + 3 * inner
        var wp = w
        for i in 0..<inner {
            let w0 = load(wp), w1 = load(wp + 8), w2 = load(wp + 16)
            let s0 = Lanes(repeating: x0[i]), s1 = Lanes(repeating: x1[i])
            a00 = a00.addingProduct(s0, w0); a01 = a01.addingProduct(s0, w1); a02 = a02.addingProduct(s0, w2)
            a10 = a10.addingProduct(s1, w0); a11 = a11.addingProduct(s1, w1); a12 = a12.addingProduct(s1, w2)
            let s2 = Lanes(repeating: x2[i]), s3 = Lanes(repeating: x3[i])
            a20 = a20.addingProduct(s2, w0); a21 = a21.addingProduct(s2, w1); a22 = a22.addingProduct(s2, w2)
            a30 = a30.addingProduct(s3, w0); a31 = a31.addingProduct(s3, w1); a32 = a32.addingProduct(s3, w2)
            wp += ldw
        }
        store(a00, y); store(a01, y + 8); store(a02, y + 16)
        store(a10, y + ldy); store(a11, y + ldy + 8); store(a12, y + ldy + 16)
        store(a20, y + 2 * ldy); store(a21, y + 2 * ldy + 8); store(a22, y + 2 * ldy + 16)
        store(a30, y + 3 * ldy); store(a31, y + 3 * ldy + 8); store(a32, y + 3 * ldy + 16)
    }

    /// One row by 8 columns: the edges the panels leave.
    @inline(__always)
    private static func strip(_ x: UnsafePointer<Float>, _ inner: Int, _ w: UnsafePointer<Float>, _ ldw: Int,
                              _ bias: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>) {
        var a = load(bias)
        for i in 0..<inner { a = a.addingProduct(Lanes(repeating: x[i]), load(w + i * ldw)) }
        store(a, y)
    }

    /// `x = layerNorm(x + residual) * weight + bias` over each row of `width` (a multiple of 8).
    static func addAndNormalise(_ x: UnsafeMutablePointer<Float>, _ residual: UnsafePointer<Float>?, rows: Int, width: Int,
                                weight: UnsafePointer<Float>, bias: UnsafePointer<Float>, epsilon: Float) {
        for row in 0..<rows {
            let r = x + row * width
            var sum = Lanes()
            for i in stride(from: 0, to: width, by: 8) {
                var v = load(r + i)
                if let residual { v += load(residual + row * width + i); store(v, r + i) }
                sum += v
            }
            let mean = sum.sum() / Float(width)
            var squares = Lanes()
            for i in stride(from: 0, to: width, by: 8) { let d = load(r + i) - mean; squares = squares.addingProduct(d, d) }
            let scale = 1 / (squares.sum() / Float(width) + epsilon).squareRoot()
            for i in stride(from: 0, to: width, by: 8) { store((load(r + i) - mean) * scale * load(weight + i) + load(bias + i), r + i) }
        }
    }

    /// The exact GELU, `x/2 (1 + erf(x/sqrt 2))`, in place over `count` (a multiple of 8) values.
    static func gelu(_ x: UnsafeMutablePointer<Float>, count: Int) {
        for i in stride(from: 0, to: count, by: 8) {
            let v = load(x + i)
            store(0.5 * v * (1 + erf(v * 0.707_106_77)), x + i)
        }
    }

    /// erf by Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7).
    @inline(__always) static func erf(_ x: Lanes) -> Lanes {
        let a = x.replacing(with: -x, where: x .< 0)
        let t = 1 / (1 + 0.327_591_1 * a)
        var p = Lanes(repeating: 1.061_405_429)
        p = p * t - 1.453_152_027
        p = p * t + 1.421_413_741
        p = p * t - 0.284_496_736
        p = p * t + 0.254_829_592
        let magnitude = 1 - p * t * exp(-a * a)
        return magnitude.replacing(with: -magnitude, where: x .< 0)
    }

    /// e^x for each lane: `x = n ln 2 + r`, `|r| <= ln 2 / 2`, e^r by its
    /// degree-6 Taylor polynomial (relative error about 2e-7), 2^n by the
    /// exponent bits. Adding 1.5 * 2^23 rounds `x log2 e` to the nearest
    /// integer and leaves that integer in the low mantissa bits, so no lane
    /// leaves the vector registers for a conversion.
    @inline(__always) static func exp(_ x: Lanes) -> Lanes {
        let x = x.clamped(lowerBound: Lanes(repeating: -87), upperBound: Lanes(repeating: 88))
        let shifted = x * 1.442_695_04 + 12_582_912
        let n = shifted - 12_582_912
        let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6
        var p = Lanes(repeating: 0.001_388_888_9) // 1/720
        p = p * r + 0.008_333_333 // 1/120
        p = p * r + 0.041_666_668 // 1/24
        p = p * r + 0.166_666_67 // 1/6
        p = p * r + 0.5
        p = p * r + 1
        p = p * r + 1
        // The low bits of `shifted` are 0x4B40_0000 + n: rebias to n + 127 and move into the exponent.
        let exponent = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- (0x4B40_0000 - 127)) &<< 23
        return p * unsafeBitCast(exponent, to: Lanes.self)
    }
}
