import Foundation
import Testing
import TestSupport
import WIM
@testable import SequenceModel

/// `TaskSequences/schema.json` (what editors check a sequence against) and the parser (what
/// the agent and the server accept) list the same step types, each with the same parameters.
struct SchemaAgreementTests {
    @Test func theSchemaAndTheParserKnowTheSameStepsAndParameters() throws {
        let data = try Data(contentsOf: packageRoot.appendingPathComponent("TaskSequences/schema.json"))
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let step = try #require(((schema["$defs"] as? [String: Any])?["step"]) as? [String: Any])
        let common = try #require(step["properties"] as? [String: Any])
        let types = try #require((common["type"] as? [String: Any])?["enum"] as? [String])
        #expect(types == StepAction.typeNames)
        #expect(Set(types) == Set(Checker.parameterKeys.keys))
        #expect(Set(common.keys) == Checker.commonKeys)
        var described: [String: Set<String>] = [:]
        for clause in step["allOf"] as? [[String: Any]] ?? [] {
            let type = ((((clause["if"] as? [String: Any])?["properties"] as? [String: Any])?["type"] as? [String: Any])?["const"] as? String) ?? "?"
            described[type] = Set((((clause["then"] as? [String: Any])?["properties"]) as? [String: Any] ?? [:]).keys)
        }
        for (type, parameters) in Checker.parameterKeys where !parameters.isEmpty {
            #expect(described[type] == parameters, "\(type): schema \(described[type].map { $0.sorted() } ?? []) vs parser \(parameters.sorted())")
        }
    }

    /// Conditions: the schema's one-key comparisons and its fact conditions (fact names and
    /// operators) are those the parser takes.
    @Test func theSchemaAndTheParserKnowTheSameConditionsAndFacts() throws {
        let data = try Data(contentsOf: packageRoot.appendingPathComponent("TaskSequences/schema.json"))
        let schema = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let defs = try #require(schema["$defs"] as? [String: Any])
        let comparison = try #require((defs["comparison"] as? [String: Any])?["properties"] as? [String: Any])
        #expect(Set(comparison.keys) == Set(["all", "any", "not", "defined"] + Condition.Comparison.allCases.map(\.rawValue)))
        let fact = try #require((defs["factCondition"] as? [String: Any])?["properties"] as? [String: Any])
        let names = try #require((fact["fact"] as? [String: Any])?["enum"] as? [String])
        #expect(names == FactNames.conditionFacts)
        #expect(Set(fact.keys).subtracting(["fact"])
                == Set(Condition.Comparison.symbols.keys).union(Condition.Comparison.allCases.map(\.rawValue)))
    }

    /// The parser cannot link the WIM module (the server uses it), so it checks on its own.
    @Test func captureCompressionChoicesAreThoseTheWIMWriterTakes() {
        for good in ["none", "xpress", "lzx", "lzms", "LZX:1", "lzms:100", "xpress:50"] {
            #expect(Checker.isCompressionChoice(good) && CompressionChoice(parsing: good) != nil, "\(good)")
        }
        for bad in ["", "zip", "none:5", "lzx:0", "lzx:101", "lzx:", "lzx:5:5", "lzx:fast"] {
            #expect(!Checker.isCompressionChoice(bad) && CompressionChoice(parsing: bad) == nil, "\(bad)")
        }
        for good in ["reference.wim", "ref-${ComputerName}.wim", "${Site}-${Model}.WIM"] {
            #expect(Checker.isCaptureFileName(good), "\(good)")
        }
        for bad in ["../x.wim", ".hidden.wim", "a/b.wim", "ref.txt", ".wim", "x y.wim"] {
            #expect(!Checker.isCaptureFileName(bad), "\(bad)")
        }
    }
}
