import Foundation
import Testing

@Suite struct PrivacyCommandsTests {
    @Test func epsilonForBothAccountants() throws {
        for (accountant, expected) in [("rdp", 8.921392), ("pld", 8.058608)] { // dp-accounting's values for this row
            let r = try Binary.run("sigilo-eval", ["epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "100",
                                                  "--delta", "1e-6", "--accountant", accountant, "--json"])
            #expect(r.status == 0, "\(r.stderr)")
            let e = try #require(jsonObject(Substring(r.stdout))?["epsilon"] as? Double)
            #expect(abs(e - expected) / expected < 0.01)
        }
    }

    @Test func calibrateFindsTheSmallestSufficientNoise() throws {
        let r = try Binary.run("sigilo-eval", ["calibrate", "--epsilon", "8", "--delta", "1e-5", "--sample-rate", "0.1", "--steps", "300", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(jsonObject(Substring(r.stdout)))
        let z = try #require(json["noise_multiplier"] as? Double)
        #expect(abs(z - 1.286) <= 0.002)
        #expect((json["epsilon"] as! Double) <= 8)
    }

    @Test(arguments: [
        (["epsilon", "--sample-rate", "0", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5"], "sample rate"),
        (["epsilon", "--sample-rate", "1.5", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5"], "sample rate"),
        (["epsilon", "--sample-rate", "0.1", "--noise-multiplier", "0", "--steps", "10", "--delta", "1e-5"], "noise multiplier"),
        (["epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "-1", "--delta", "1e-5"], "steps"),
        (["epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "10", "--delta", "1"], "delta"),
        (["epsilon", "--sample-rate", "nan", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5"], "--sample-rate"),
        (["epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "10"], "--delta"),
        (["epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "10", "--delta", "1e-5", "--accountant", "moments"], "--accountant"),
        (["calibrate", "--epsilon", "-2", "--delta", "1e-5", "--sample-rate", "0.1", "--steps", "10"], "epsilon"),
        (["calibrate", "--epsilon", "2", "--delta", "1e-5", "--sample-rate", "0.1", "--steps", "0"], "steps"),
    ])
    func badParametersExit64NamingTheParameter(_ arguments: [String], _ named: String) throws {
        let r = try Binary.run("sigilo-eval", arguments)
        #expect(r.status == 64, "\(arguments): \(r.stderr)")
        #expect(r.stderr.contains(named), "\(arguments): \(r.stderr)")
        #expect(r.stdout.isEmpty)
    }
}
