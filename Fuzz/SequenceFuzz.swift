// libFuzzer target for task sequences: the JSON parser and checker (every input is either a
// sequence or a list of issues, each with a JSON path), variable substitution and conditions.
// Compiled into the SequenceModel module by scripts/fuzz (DiskModel, which it imports, is built
// as its own module, as in the package), and linked with every other target into one binary.
import Foundation

public func fuzzSequence(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let input = Data(bytes: data, count: size)
    let (sequence, issues) = SequenceParser.parse(input, origin: "fuzz.json")
    for issue in issues where !issue.path.hasPrefix("$") || issue.message.isEmpty {
        fatalError("an issue without a JSON path or message: \(issue)")
    }
    if sequence == nil && !issues.contains(where: { $0.severity == .error }) {
        fatalError("rejected without an error")
    }
    guard let sequence else { return 0 }
    var variables = Variables(facts: ["Firmware": "uefi", "Model": "Latitude 7440", "MemoryMiB": "16384"],
                              sequence: sequence.variables, server: ["ServerURL": "http://10.0.0.1"], secrets: sequence.secrets)
    for step in sequence.allSteps {
        if let condition = step.condition { _ = condition.evaluate { variables.substitute($0) } }
        if case let .setVariable(name, value) = step.action { variables.set(name, variables.substitute(value, escape: XMLText.escape)) }
        _ = variables.redact(step.name)
    }
    return 0
}
