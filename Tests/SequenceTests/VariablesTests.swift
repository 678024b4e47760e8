import SequenceModel
import SequenceRunner
import Testing

/// `${Name}` substitution as the steps see it: nested values expand, loops stop, facts stay as
/// the machine gave them, escaping applies once to the final text.
struct VariablesTests {
    let variables = Variables(
        facts: ["SerialNumber": "S${N}1", "Firmware": "uefi"],
        sequence: ["ImageURL": "${ServerURL}/content/images/${ImageFile}", "ImageFile": "win11.wim",
                   "ComputerName": "PC-${SerialNumber}", "A": "x${B}", "B": "y${A}", "Price": "$$5 & ${Firmware}"],
        server: ["ServerURL": "http://10.77.0.1:8080"], secrets: [])

    @Test func nestedValuesExpand() {
        #expect(variables.substitute("${ImageURL}") == "http://10.77.0.1:8080/content/images/win11.wim")
        #expect(variables.substitute("name ${ComputerName}") == "name PC-S${N}1", "a fact is never expanded")
    }

    @Test func loopsStopAndUnknownNamesAreReported() {
        var unknown: [String] = []
        let text = variables.substitute("${A} ${Nope}", unknown: { unknown.append($0) })
        #expect(text == "xyx${B} ")
        #expect(unknown == ["Nope"])
    }

    @Test func escapingAppliesOnceToTheExpandedValue() {
        let xml = variables.substitute("<v>${Price}</v>", escape: { $0.replacingOccurrences(of: "&", with: "&amp;") })
        #expect(xml == "<v>$5 &amp; uefi</v>")
    }

    /// `matches` is the one glob, case-insensitive as the facts firmware reports.
    @Test func matchesIsACaseInsensitiveGlob() {
        func holds(_ value: String, _ pattern: String) -> Bool {
            Condition.compare(.matches, "${Model}", pattern).evaluate { $0.replacingOccurrences(of: "${Model}", with: value) }.0
        }
        #expect(holds("LATITUDE 7450", "latitude 7[0-4]50"))
        #expect(!holds("Latitude 7550", "latitude 7[0-4]50"))
        #expect(holds("Latitude 7450", "Lat*"))
        #expect(!holds("Precision 5570", "Lat*"))
    }
}
