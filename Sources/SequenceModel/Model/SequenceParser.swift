import DiskModel
import Foundation
import Primitives

/// One mistake in a sequence: where (JSON path), what, and what to do about it.
public struct SequenceIssue: Sendable, Equatable, CustomStringConvertible, Codable {
    public enum Severity: String, Sendable, Codable { case error, warning }
    public var severity: Severity
    public var path: String
    public var message: String
    public var hint: String?

    public var description: String {
        "\(severity.rawValue): \(path): \(message)" + (hint.map { " (hint: \($0))" } ?? "")
    }
}

/// Reads a sequence, checking everything and collecting every issue rather than stopping at
/// the first: unknown keys and types, missing parameters, layouts and rules, conditions,
/// volumes used before a step creates them, variables nothing defines.
public enum SequenceParser {
    public static func parse(_ data: Data, origin: String) -> (TaskSequence?, [SequenceIssue]) {
        let checker = Checker()
        let root: JSONValue
        do {
            root = try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            // JSONValue takes any value, so the only complaint left is the syntax.
            checker.error("$", JSONProblem(error).reason, hint: "check commas, quotes and brackets")
            return (nil, checker.issues)
        }
        let sequence = checker.sequence(root, origin: origin)
        return (checker.hasErrors ? nil : sequence, checker.issues)
    }
}

/// Names every step may use without defining them: the machine's facts and what steps set.
public enum KnownVariables {
    public static let setBySteps = ["TargetDisk", "TargetDiskSize", "TargetDiskModel", "TargetDiskSerial",
                                    "TargetMount", "WindowsDisk", "DeploymentID", "ServerURL"]
    public static func volume(_ id: String) -> String { "Volume_" + id }
}

final class Checker {
    var issues: [SequenceIssue] = []
    var hasErrors: Bool { issues.contains { $0.severity == .error } }

    // What earlier steps (in document order) make available to later ones.
    private var diskSelected = false
    /// A findWindows step comes earlier: the `windows.*` facts can be known.
    private var windowsFound = false
    private var volumes: Set<String> = []
    private var definedVariables: Set<String> = []
    private var referencedVariables: [(name: String, path: String)] = []
    private var requireVerifiedContent = false

    func error(_ path: String, _ message: String, hint: String? = nil) {
        issues.append(SequenceIssue(severity: .error, path: path, message: message, hint: hint))
    }

    func warning(_ path: String, _ message: String, hint: String? = nil) {
        issues.append(SequenceIssue(severity: .warning, path: path, message: message, hint: hint))
    }

    func sequence(_ root: JSONValue, origin: String) -> TaskSequence? {
        guard let object = object(root, "$") else { return nil }
        keys(object, "$", allowed: ["name", "version", "description", "variables", "secrets", "requireVerifiedContent", "steps", "$schema"])
        let name = string(object, "name", "$", required: true) ?? ""
        // Read before the steps: their checks depend on it.
        requireVerifiedContent = bool(object, "requireVerifiedContent", "$") ?? false
        let version = object["version"]?.scalarText ?? "1"
        var variables: [String: String] = [:]
        if let value = object["variables"] {
            if let map = self.object(value, "$.variables") {
                for (key, item) in map.sorted(by: { $0.key < $1.key }) {
                    guard let text = item.scalarText else {
                        error("$.variables.\(key)", "expected a string, number or true/false, found \(item.kind)")
                        continue
                    }
                    if !Self.isVariableName(key) {
                        error("$.variables.\(key)", "\"\(key)\" is not a variable name", hint: "letters, digits and _ only")
                    }
                    if FactNames.all.contains(key) {
                        error("$.variables.\(key)", "\(key) is a fact of the machine and cannot be set", hint: "pick another name")
                    }
                    variables[key] = text
                    note(text, "$.variables.\(key)")
                }
            }
        }
        definedVariables.formUnion(variables.keys)
        var secrets = Set(variables.keys.filter(SecretNames.looksSecret))
        if let value = object["secrets"] {
            for (index, item) in (array(value, "$.secrets") ?? []).enumerated() {
                if let text = item.stringValue { secrets.insert(text) } else { error("$.secrets[\(index)]", "expected a variable name") }
            }
        }
        var steps: [Step] = []
        if let value = object["steps"] {
            steps = self.steps(value, "$.steps", prefix: "")
        } else {
            error("$.steps", "missing (required)", hint: "a sequence is a list of steps")
        }
        let known = Set(FactNames.all).union(KnownVariables.setBySteps).union(definedVariables)
        for reference in referencedVariables where Self.isVariableName(reference.name) && !known.contains(reference.name)
            && !reference.name.hasPrefix("Volume_") {
            warning(reference.path, "${\(reference.name)} is not a fact, a sequence variable, or set by a step",
                    hint: "the server must send it for this machine, or it stays empty" + suggestion(reference.name, among: known))
        }
        return TaskSequence(name: name, version: version, description: object["description"]?.stringValue,
                            variables: variables, secrets: secrets, steps: steps,
                            requireVerifiedContent: requireVerifiedContent, origin: origin)
    }

    /// A file name the server accepts for an upload, `${Variable}`s aside.
    static func isCaptureFileName(_ text: String) -> Bool {
        var literal = ""
        var rest = Substring(text)
        while let open = rest.range(of: "${"), let close = rest[open.upperBound...].firstIndex(of: "}") {
            literal += rest[..<open.lowerBound] + "x"
            rest = rest[rest.index(after: close)...]
        }
        literal += rest
        return literal.count <= 128 && literal.lowercased().hasSuffix(".wim") && literal.count > 4 && !literal.contains("..")
            && literal.first.map { $0.isASCII && ($0.isLetter || $0.isNumber) } == true
            && literal.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
    }

    /// `FORMAT[:LEVEL]` as `imprint wim capture --compress` takes it.
    static func isCompressionChoice(_ text: String) -> Bool {
        let parts = text.lowercased().split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), ["none", "xpress", "lzx", "lzms"].contains(parts[0]) else { return false }
        return parts.count == 1 || (parts[0] != "none" && Int(parts[1]).map { (1...100).contains($0) } == true)
    }

    static func isVariableName(_ text: String) -> Bool {
        !text.isEmpty && text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") } && !(text.first?.isNumber ?? true)
    }

    private func steps(_ value: JSONValue, _ path: String, prefix: String) -> [Step] {
        guard let items = array(value, path) else { return [] }
        if items.isEmpty { error(path, "no steps", hint: "remove the group or add steps") }
        return items.enumerated().compactMap { index, item in
            step(item, "\(path)[\(index)]", number: prefix.isEmpty ? "\(index + 1)" : "\(prefix).\(index + 1)")
        }
    }

    static let commonKeys: Set<String> = ["type", "name", "condition", "continueOnError", "retry", "timeout", "description"]
    static let parameterKeys: [String: Set<String>] = [
        "group": ["steps"], "selectDisk": ["rules"], "partition": ["layout"], "format": ["volume", "format"],
        "findWindows": ["rules", "as"], "cleanVolume": ["volume", "mode", "folders"],
        "applyImage": ["source", "image", "sha256", "target", "mode", "cacheDirectory", "multicast"],
        "writeImage": ["source", "sha256", "target", "multicast"], "injectDrivers": ["source", "target", "architecture"],
        "captureImage": ["volume", "imageName", "imageDescription", "flags", "upload", "path", "compress", "workDirectory",
                         "allowNotGeneralized", "config"],
        "makeBootable": ["windows", "esp", "firmware", "locale", "menuTimeout", "label", "recovery"],
        "unattend": ["template", "content", "target"], "runCommand": ["command", "environment", "mountVolume", "successCodes", "runAgainAfterInterruption"],
        "setVariable": ["variable", "value"], "reboot": [], "poweroff": [],
    ]

    private func step(_ value: JSONValue, _ path: String, number: String) -> Step? {
        guard let object = object(value, path) else { return nil }
        guard let type = string(object, "type", path, required: true) else { return nil }
        guard let parameters = Self.parameterKeys[type] else {
            error(path + ".type", "unknown step type \"\(type)\"",
                  hint: "one of " + StepAction.typeNames.joined(separator: ", ") + suggestion(type, among: Set(StepAction.typeNames)))
            return nil
        }
        keys(object, path, allowed: Self.commonKeys.union(parameters))
        let name = string(object, "name", path, required: false) ?? type
        var condition: Condition?
        if let value = object["condition"] { condition = self.condition(value, path + ".condition") }
        let continueOnError = bool(object, "continueOnError", path) ?? false
        var retry = Retry.none
        if let value = object["retry"] { retry = self.retry(value, path + ".retry") }
        var timeout: Double?
        if let value = object["timeout"] { timeout = duration(value, path + ".timeout") }

        let action: StepAction?
        switch type {
        case "group":
            action = object["steps"].map { .group(steps($0, path + ".steps", prefix: number)) }
            if object["steps"] == nil { error(path + ".steps", "missing (required)", hint: "a group holds steps") }
        case "selectDisk":
            let rules = decode(DiskRules.self, object["rules"] ?? .object([:]), path + ".rules")
            diskSelected = true
            action = rules.map { .selectDisk(rules: $0) }
        case "partition":
            if !diskSelected { error(path, "partition needs a disk", hint: "add a selectDisk step before it") }
            guard let layoutValue = required(object, "layout", path) else { return nil }
            let layout = decode(PartitionLayout.self, layoutValue, path + ".layout")
            for partition in layout?.partitions ?? [] {
                if let id = partition.id {
                    volumes.insert(id)
                    definedVariables.insert(KnownVariables.volume(id))
                }
            }
            action = layout.map { .partition(layout: $0) }
        case "format":
            let volume = volumeReference(object, "volume", path)
            let spec = required(object, "format", path).flatMap { decode(FormatSpec.self, $0, path + ".format") }
            action = volume.flatMap { v in spec.map { .format(volume: v, spec: $0) } }
        case "findWindows":
            let rules = decode(DiskRules.self, object["rules"] ?? .object(["hasWindows": .bool(true)]), path + ".rules")
            let name = string(object, "as", path, required: false) ?? "windows"
            volumes.insert(name)
            definedVariables.insert(KnownVariables.volume(name))
            diskSelected = true
            windowsFound = true
            action = rules.map { .findWindows(rules: $0, volume: name) }
        case "cleanVolume":
            let volume = volumeReference(object, "volume", path)
            let modeText = string(object, "mode", path, required: false) ?? "move"
            let mode = CleanupMode(rawValue: modeText)
            if mode == nil { error(path + ".mode", "unknown mode \"\(modeText)\"", hint: "move (to Windows.old) or delete") }
            var folders = CleanupPolicy.defaultFolders
            if let value = object["folders"] {
                folders = (array(value, path + ".folders") ?? []).enumerated().compactMap { index, item in
                    guard let text = item.stringValue else { error("\(path).folders[\(index)]", "expected a folder name"); return nil }
                    if CleanupPolicy.protectedFolders.contains(where: { $0.caseInsensitiveCompare(text) == .orderedSame }) {
                        error("\(path).folders[\(index)]", "\"\(text)\" holds the users' files and is never cleaned",
                              hint: "remove it: a refresh keeps Users")
                    }
                    return text
                }
            }
            action = volume.flatMap { v in mode.map { .cleanVolume(volume: v, mode: $0, folders: folders) } }
        case "applyImage":
            if let reference = object["image"]?.objectValue {
                // {"library": NAME, "version": "latest"|N}: imprint-server puts the version's
                // URL, SHA-256 and index in its place when it hands the sequence out.
                let name = reference["library"]?.stringValue ?? ""
                if name.isEmpty { error(path + ".image.library", "the library image's name is missing", hint: "\"image\": {\"library\": \"Windows 11 Pro\"}") }
                let version = reference["version"]?.scalarText ?? "latest"
                if version != "latest" && !(Int(version).map { $0 > 0 } ?? false) {
                    error(path + ".image.version", "a library version is \"latest\" or a number, not \"\(version)\"")
                }
                for key in reference.keys where key != "library" && key != "version" {
                    error(path + ".image.\(key)", "unknown key", hint: "a library image is {\"library\": NAME, \"version\": \"latest\" or N}")
                }
                if object["source"] != nil || object["sha256"] != nil {
                    error(path + ".source", "a step names a library image or a source, not both", hint: "the server gives the library version's source and SHA-256")
                }
                if object["multicast"] != nil {
                    error(path + ".multicast", "a multicast session is given with a source, not with a library image",
                          hint: "imprint-server adds it when it hands the sequence out, with the version's source")
                }
                warning(path + ".image", "names the library image \"\(name)\": imprint-server resolves it when it hands the sequence out; run from anywhere else, this step fails")
                let target = volumeReference(object, "target", path)
                let modeText = string(object, "mode", path, required: false) ?? "download"
                let mode = ApplyImageStep.Mode(rawValue: modeText)
                if mode == nil { error(path + ".mode", "unknown mode \"\(modeText)\"", hint: "download or stream") }
                let cache = string(object, "cacheDirectory", path, required: false) ?? "/var/cache/imprint"
                action = target.flatMap { t in mode.map {
                    .applyImage(ApplyImageStep(source: "", image: "1", sha256: nil, target: t, mode: $0, cacheDirectory: cache,
                                               library: LibraryImageReference(name: name, version: version)))
                } }
                break
            }
            let source = string(object, "source", path, required: true)
            let image = object["image"]?.scalarText ?? "1"
            let target = volumeReference(object, "target", path)
            let modeText = string(object, "mode", path, required: false) ?? "download"
            let mode = ApplyImageStep.Mode(rawValue: modeText)
            if mode == nil { error(path + ".mode", "unknown mode \"\(modeText)\"", hint: "download or stream") }
            let sha = checksum(object, path)
            if let source { checkVerified(source, sha, path) }
            let cache = string(object, "cacheDirectory", path, required: false) ?? "/var/cache/imprint"
            let multicast = object["multicast"].flatMap { multicastFields($0, path + ".multicast") }
            action = source.flatMap { s in target.flatMap { t in mode.map {
                .applyImage(ApplyImageStep(source: s, image: image, sha256: sha, target: t, mode: $0, cacheDirectory: cache,
                                           multicast: multicast))
            } } }
        case "writeImage":
            let source = string(object, "source", path, required: true)
            let target = string(object, "target", path, required: false) ?? "disk"
            if target == "disk" {
                if !diskSelected { error(path, "writeImage to the disk needs a disk", hint: "add a selectDisk step before it") }
            } else if !volumes.contains(target) && !target.contains("${") {
                error(path + ".target", "no earlier step makes a volume \"\(target)\"", hint: "\"disk\", or a partition id of a layout")
            }
            let sha = checksum(object, path)
            if let source { checkVerified(source, sha, path) }
            let multicast = object["multicast"].flatMap { multicastFields($0, path + ".multicast") }
            action = source.map { .writeImage(WriteImageStep(source: $0, sha256: sha, target: target, multicast: multicast)) }
        case "captureImage":
            let volume = volumeReference(object, "volume", path)
            let imageName = string(object, "imageName", path, required: true)
            let upload = string(object, "upload", path, required: false)
            let destination = string(object, "path", path, required: false)
            if (upload == nil) == (destination == nil) {
                error(path, "give exactly one of \"upload\" (a file name the server keeps) and \"path\" (a file on this machine)")
            }
            if let upload, !Self.isCaptureFileName(upload) {
                error(path + ".upload", "\"\(upload)\" is not a capture file name",
                      hint: "letters, digits, '-', '_', '.' and ${Variable}, ending in .wim (the server picks the folder)")
            }
            if let destination, !destination.lowercased().hasSuffix(".wim") {
                error(path + ".path", "\"\(destination)\" does not end in .wim")
            }
            let compress = string(object, "compress", path, required: false) ?? "lzx"
            if !Self.isCompressionChoice(compress) {
                error(path + ".compress", "unknown compression \"\(compress)\"", hint: "none, xpress, lzx or lzms, optionally :LEVEL (1-100), e.g. lzx:70")
            }
            let work = string(object, "workDirectory", path, required: false) ?? "/var/cache/imprint/capture"
            let allow = bool(object, "allowNotGeneralized", path) ?? false
            action = volume.flatMap { v in imageName.map {
                .captureImage(CaptureImageStep(volume: v, imageName: $0, imageDescription: string(object, "imageDescription", path, required: false),
                                               flags: string(object, "flags", path, required: false), upload: upload, path: destination,
                                               compress: compress, workDirectory: work, allowNotGeneralized: allow,
                                               config: string(object, "config", path, required: false)))
            } }
        case "injectDrivers":
            let source = string(object, "source", path, required: true)
            let target = volumeReference(object, "target", path)
            let architecture = string(object, "architecture", path, required: false) ?? "amd64"
            if !["amd64", "x86", "arm64"].contains(architecture) {
                error(path + ".architecture", "unknown architecture \"\(architecture)\"", hint: "amd64, x86 or arm64")
            }
            action = source.flatMap { s in target.map { .injectDrivers(InjectDriversStep(source: s, target: $0, architecture: architecture)) } }
        case "makeBootable":
            let windows = volumeReference(object, "windows", path)
            let esp = volumeReference(object, "esp", path)
            let firmware = string(object, "firmware", path, required: false) ?? "auto"
            if !["uefi", "bios", "auto"].contains(firmware), !firmware.contains("${") {
                error(path + ".firmware", "unknown firmware \"\(firmware)\"", hint: "uefi, bios, or auto (from the system partition's table: MBR boots by BIOS)")
            }
            let locale = string(object, "locale", path, required: false) ?? "en-US"
            var menuTimeout: UInt64 = 30
            if let value = object["menuTimeout"] {
                if case let .number(n) = value, n >= 0, n == n.rounded(), n <= 3600 { menuTimeout = UInt64(n) } else {
                    error(path + ".menuTimeout", "expected whole seconds from 0 to 3600")
                }
            }
            let label = string(object, "label", path, required: false) ?? "Windows"
            var recovery = RecoveryChoice.automatic
            switch object["recovery"] {
            case nil: break
            case .bool(false)?: recovery = .off
            case let .string(name)? where !name.isEmpty: recovery = .volume(name)
            default: error(path + ".recovery", "expected a volume name, or false for no Windows RE",
                           hint: "leave it out to use the disk's recovery partition when the image holds Winre.wim")
            }
            action = windows.flatMap { w in esp.map {
                .makeBootable(MakeBootableStep(windows: w, esp: $0, firmware: firmware, locale: locale, menuTimeout: menuTimeout,
                                               label: label, recovery: recovery))
            } }
        case "unattend":
            let template = string(object, "template", path, required: false)
            let content = string(object, "content", path, required: false)
            if (template == nil) == (content == nil) {
                error(path, "give exactly one of \"template\" (a path or URL) and \"content\" (the XML)")
            }
            let target = volumeReference(object, "target", path)
            action = target.map { .unattend(UnattendStep(template: template, content: content, target: $0)) }
        case "runCommand":
            var command: [String] = []
            switch object["command"] {
            case let .string(text)?: command = ["/bin/sh", "-c", text]; note(text, path + ".command")
            case let .array(items)?:
                command = items.enumerated().compactMap { index, item in
                    guard let text = item.stringValue else { error("\(path).command[\(index)]", "expected a string"); return nil }
                    note(text, "\(path).command[\(index)]")
                    return text
                }
                if command.isEmpty { error(path + ".command", "empty command") }
            case nil: error(path + ".command", "missing (required)", hint: "a string for /bin/sh -c, or an array of arguments")
            case let other?: error(path + ".command", "expected a string or an array, found \(other.kind)")
            }
            var environment: [String: String] = [:]
            if let value = object["environment"], let map = self.object(value, path + ".environment") {
                for (key, item) in map {
                    if let text = item.scalarText { environment[key] = text; note(text, "\(path).environment.\(key)") } else {
                        error("\(path).environment.\(key)", "expected a string")
                    }
                }
            }
            let mount = object["mountVolume"] != nil ? volumeReference(object, "mountVolume", path) : nil
            var codes: [Int32] = [0]
            if let value = object["successCodes"] {
                codes = (array(value, path + ".successCodes") ?? []).compactMap { item in
                    if case let .number(n) = item, n == n.rounded(), abs(n) < 256 { return Int32(n) }
                    error(path + ".successCodes", "expected whole numbers (exit codes)")
                    return nil
                }
            }
            let shell: Bool
            if case .string? = object["command"] { shell = true } else { shell = false }
            var parameters = RunCommandStep(command: command, shell: shell, environment: environment, mountVolume: mount, successCodes: codes)
            parameters.runAgainAfterInterruption = bool(object, "runAgainAfterInterruption", path) ?? false
            action = command.isEmpty ? nil : .runCommand(parameters)
        case "setVariable":
            let name = string(object, "variable", path, required: true)
            let value = object["value"]?.scalarText
            if object["value"] == nil { error(path + ".value", "missing (required)") } else if value == nil {
                error(path + ".value", "expected a string, number or true/false")
            }
            if let name {
                if !Self.isVariableName(name) { error(path + ".variable", "\"\(name)\" is not a variable name", hint: "letters, digits and _ only") }
                if FactNames.all.contains(name) { error(path + ".variable", "\(name) is a fact of the machine and cannot be set") }
                definedVariables.insert(name)
            }
            if let value { note(value, path + ".value") }
            action = name.flatMap { n in value.map { .setVariable(name: n, value: $0) } }
        case "reboot": action = .reboot
        default: action = .poweroff
        }
        guard let action else { return nil }
        return Step(number: number, jsonPath: path, name: name, condition: condition, continueOnError: continueOnError,
                    retry: retry, timeout: timeout, action: action)
    }

    // MARK: - Pieces

    private func condition(_ value: JSONValue, _ path: String) -> Condition? {
        guard let object = object(value, path) else { return nil }
        if let fact = object["fact"] { return factCondition(fact, object, path) }
        guard object.count == 1, let (key, operand) = object.first else {
            error(path, "a condition has exactly one key", hint: "wrap several in {\"all\": [...]} or {\"any\": [...]}")
            return nil
        }
        switch key {
        case "all", "any":
            let items = (array(operand, "\(path).\(key)") ?? []).enumerated().compactMap { condition($1, "\(path).\(key)[\($0)]") }
            return key == "all" ? .all(items) : .any(items)
        case "not":
            return condition(operand, path + ".not").map { .not($0) }
        case "defined":
            guard let name = operand.stringValue, Self.isVariableName(name) else {
                error(path + ".defined", "expected a variable name (without ${})")
                return nil
            }
            referencedVariables.append((name, path + ".defined"))
            return .defined(name)
        default:
            guard let comparison = Condition.Comparison(rawValue: key) else {
                let known = ["all", "any", "not", "defined"] + Condition.Comparison.allCases.map(\.rawValue)
                error(path + "." + key, "unknown condition \"\(key)\"",
                      hint: "one of " + known.joined(separator: ", ") + suggestion(key, among: Set(known)))
                return nil
            }
            guard let pair = operand.arrayValue, pair.count == 2, let left = pair[0].scalarText, let right = pair[1].scalarText else {
                error(path + "." + key, "expected two values: [\"${Variable}\", \"value\"]")
                return nil
            }
            if comparison == .regex, (try? NSRegularExpression(pattern: right)) == nil, !right.contains("${") {
                error(path + ".regex[1]", "\"\(right)\" is not a valid regular expression")
            }
            note(left, path + "." + key + "[0]")
            note(right, path + "." + key + "[1]")
            return .compare(comparison, left, right)
        }
    }

    /// `{"fact": "windows.build", ">=": 19045}`: a fact, one operator (`==`, `!=`, `>`, `>=`,
    /// `<`, `<=`, or a comparison's name such as `matches`) and the value it is compared with.
    private func factCondition(_ fact: JSONValue, _ object: [String: JSONValue], _ path: String) -> Condition? {
        let operators = Condition.Comparison.symbols.keys.sorted() + Condition.Comparison.allCases.map(\.rawValue)
        guard let name = fact.stringValue, FactNames.variable(forFact: name) != nil else {
            let known = FactNames.conditionFacts
            error(path + ".fact", fact.stringValue.map { "unknown fact \"\($0)\"" } ?? "expected a fact's name, found \(fact.kind)",
                  hint: "one of " + known.joined(separator: ", ") + suggestion(fact.stringValue ?? "", among: Set(known)))
            return nil
        }
        let others = object.keys.filter { $0 != "fact" }.sorted()
        guard others.count == 1, let key = others.first else {
            error(path, others.isEmpty ? "a fact condition needs a comparison" : "a fact condition has one comparison, found \(others.joined(separator: ", "))",
                  hint: "{\"fact\": \"\(name)\", \">=\": 19045}: one of " + operators.joined(separator: " "))
            return nil
        }
        guard let comparison = Condition.Comparison.symbols[key] ?? Condition.Comparison(rawValue: key) else {
            error(path + "." + key, "unknown comparison \"\(key)\"", hint: "one of " + operators.joined(separator: " "))
            return nil
        }
        guard let operand = object[key], let expected = operand.scalarText else {
            error(path + "." + key, "expected a string, number or true/false to compare \(name) with")
            return nil
        }
        if comparison.isNumeric, !expected.contains("${"), Condition.number(expected) == nil {
            error(path + "." + key, "\(key) compares numbers, and \(operand.scalarText.map { "\"\($0)\"" } ?? "this") is not one",
                  hint: "{\"fact\": \"\(name)\", \"\(key)\": 19045}")
        }
        if comparison == .regex, (try? NSRegularExpression(pattern: expected)) == nil, !expected.contains("${") {
            error(path + ".regex", "\"\(expected)\" is not a valid regular expression")
        }
        note(expected, path + "." + key)
        if name.hasPrefix("windows."), !windowsFound {
            warning(path + ".fact", "\(name) is known only after a findWindows step; here the condition never holds",
                    hint: "put a findWindows step before this one")
        }
        return .fact(name, comparison, expected)
    }

    private func retry(_ value: JSONValue, _ path: String) -> Retry {
        if case let .number(count) = value, count >= 0, count == count.rounded(), count <= 100 {
            return Retry(count: Int(count), delay: 5)
        }
        guard let object = object(value, path) else { return .none }
        keys(object, path, allowed: ["count", "delay"])
        var retry = Retry(count: 1, delay: 5)
        if let count = object["count"] {
            if case let .number(n) = count, n >= 0, n == n.rounded(), n <= 100 { retry.count = Int(n) } else {
                error(path + ".count", "expected a whole number from 0 to 100")
            }
        }
        if let delay = object["delay"] { retry.delay = duration(delay, path + ".delay") ?? 5 }
        return retry
    }

    /// Seconds, or text such as `90s`, `10m`, `2h`.
    private func duration(_ value: JSONValue, _ path: String) -> Double? {
        switch value {
        case let .number(seconds) where seconds >= 0: return seconds
        case let .string(text):
            let units: [Character: Double] = ["s": 1, "m": 60, "h": 3600]
            if let unit = text.last, let scale = units[unit], let number = Double(text.dropLast()), number >= 0 { return number * scale }
            if let number = Double(text), number >= 0 { return number }
            fallthrough
        default:
            error(path, "expected a duration: seconds, or text like \"90s\", \"10m\", \"2h\"")
            return nil
        }
    }

    /// A literal `http://` source without a sha256: a warning, or an error when the sequence
    /// requires verified content. A source behind a variable is judged when the step runs.
    private func checkVerified(_ source: String, _ sha256: String?, _ path: String) {
        guard UnverifiedContent.isUnverified(source: source, sha256: sha256) else { return }
        let hint = "add \"sha256\" (sha256sum FILE prints it) or use an https:// URL"
        if requireVerifiedContent {
            error(path + ".source", UnverifiedContent.refusal(source), hint: hint)
        } else {
            warning(path + ".source", UnverifiedContent.warning(source), hint: hint)
        }
    }

    private func checksum(_ object: [String: JSONValue], _ path: String) -> String? {
        guard let text = string(object, "sha256", path, required: false) else { return nil }
        let lower = text.lowercased()
        if !(lower.count == 64 && lower.allSatisfy(\.isHexDigit)) && !text.contains("${") {
            error(path + ".sha256", "not a SHA-256 (64 hexadecimal digits)", hint: "sha256sum FILE prints it")
        }
        return lower
    }

    /// `"multicast"`: the session the server put the machine in, every field checked here so
    /// that a damaged one fails the sequence's check, not the receiver halfway through a disk.
    private func multicastFields(_ value: JSONValue, _ path: String) -> MulticastSessionDescriptor? {
        guard let object = object(value, path) else { return nil }
        keys(object, path, allowed: MulticastSessionDescriptor.keys)
        let errorsBefore = issues.count(where: { $0.severity == .error })
        func hexID(_ key: String) -> String {
            guard let text = string(object, key, path, required: true) else { return "" }
            if !MulticastSessionDescriptor.isHexID(text) { error("\(path).\(key)", "\"\(text)\" is not 16 hexadecimal digits") }
            return text.lowercased()
        }
        func whole(_ key: String, _ range: ClosedRange<Double>, required: Bool) -> Double? {
            guard let value = object[key] else {
                if required { error("\(path).\(key)", "missing (required)") }
                return nil
            }
            guard case let .number(number) = value, number == number.rounded(), range.contains(number) else {
                error("\(path).\(key)", "expected a whole number from \(Int64(range.lowerBound)) to \(Int64(range.upperBound)), found \(value.scalarText ?? value.kind)")
                return nil
            }
            return number
        }
        let session = hexID("session"), receiver = hexID("receiver")
        let group = string(object, "group", path, required: true) ?? ""
        if !group.isEmpty && !IPv4.isMulticast(group) {
            error(path + ".group", "\"\(group)\" is not an IPv4 multicast address", hint: "224.0.0.0 to 239.255.255.255, e.g. 239.255.77.1")
        }
        let port = whole("port", 1...65535, required: true)
        let source = string(object, "source", path, required: true) ?? ""
        let manifest = string(object, "manifest", path, required: true) ?? ""
        for (key, url) in [("source", source), ("manifest", manifest)] where !url.isEmpty && !MulticastSessionDescriptor.isHTTPURL(url) {
            error("\(path).\(key)", "\"\(url)\" is not an http:// or https:// URL")
        }
        // Up to 2^53: a JSON number is a double, exact that far (8 PiB).
        let size = whole("size", 0...9_007_199_254_740_992, required: true)
        let digest = string(object, "manifestSHA256", path, required: true) ?? ""
        if !digest.isEmpty && !(digest.count == 64 && digest.allSatisfy(\.isHexDigit)) {
            error(path + ".manifestSHA256", "not a SHA-256 (64 hexadecimal digits)")
        }
        let wait = whole("waitSeconds", 1...3600, required: false)
        guard issues.count(where: { $0.severity == .error }) == errorsBefore, let port, let size else { return nil }
        return MulticastSessionDescriptor(session: session, receiver: receiver, group: group, port: Int(port), source: source,
                                         size: UInt64(size), manifest: manifest, manifestSHA256: digest.lowercased(),
                                         waitSeconds: wait.map { Int($0) })
    }

    private func volumeReference(_ object: [String: JSONValue], _ key: String, _ path: String) -> String? {
        guard let name = string(object, key, path, required: true) else { return nil }
        if !volumes.contains(name) && !name.contains("${") {
            error("\(path).\(key)", "no earlier step makes a volume \"\(name)\"",
                  hint: "a partition id of an earlier layout, or the \"as\" of a findWindows step" + suggestion(name, among: volumes))
        }
        return name
    }

    private func decode<T: Decodable>(_ type: T.Type, _ value: JSONValue, _ path: String) -> T? {
        do throws(DiskError) {
            return try JSONInput.decode(T.self, from: value.data, file: "")
        } catch {
            if case let .invalidJSON(_, inner, reason) = error {
                self.error(path + inner.dropFirst(), reason)
            } else {
                self.error(path, error.description)
            }
            return nil
        }
    }

    private func required(_ object: [String: JSONValue], _ key: String, _ path: String) -> JSONValue? {
        guard let value = object[key] else { error("\(path).\(key)", "missing (required)"); return nil }
        return value
    }

    private func object(_ value: JSONValue, _ path: String) -> [String: JSONValue]? {
        guard let object = value.objectValue else { error(path, "expected an object, found \(value.kind)"); return nil }
        return object
    }

    private func array(_ value: JSONValue, _ path: String) -> [JSONValue]? {
        guard let array = value.arrayValue else { error(path, "expected an array, found \(value.kind)"); return nil }
        return array
    }

    private func string(_ object: [String: JSONValue], _ key: String, _ path: String, required: Bool) -> String? {
        guard let value = object[key] else {
            if required { error("\(path).\(key)", "missing (required)") }
            return nil
        }
        guard let text = value.stringValue else { error("\(path).\(key)", "expected a string, found \(value.kind)"); return nil }
        note(text, "\(path).\(key)")
        return text
    }

    private func bool(_ object: [String: JSONValue], _ key: String, _ path: String) -> Bool? {
        guard let value = object[key] else { return nil }
        guard case let .bool(flag) = value else { error("\(path).\(key)", "expected true or false, found \(value.kind)"); return nil }
        return flag
    }

    private func keys(_ object: [String: JSONValue], _ path: String, allowed: Set<String>) {
        for key in object.keys.sorted() where !allowed.contains(key) {
            error("\(path).\(key)", "unknown key \"\(key)\"", hint: "known here: " + allowed.sorted().joined(separator: ", ")
                  + suggestion(key, among: allowed))
        }
    }

    /// Records the `${Name}` references of a string for the undefined-variable check.
    private func note(_ text: String, _ path: String) {
        for name in Variables.references(in: text) { referencedVariables.append((name, path)) }
        for problem in Variables.syntaxProblems(in: text) { error(path, problem, hint: "write ${Name}; $$ for a literal $") }
    }

    private func suggestion(_ word: String, among candidates: Set<String>) -> String {
        let lower = word.lowercased()
        var best: (name: String, distance: Int)?
        for candidate in candidates.sorted() {
            let distance = Self.distance(lower, candidate.lowercased())
            if let current = best, current.distance <= distance { continue }
            best = (candidate, distance)
        }
        guard let best, best.distance <= max(2, word.count / 3), best.name != word else { return "" }
        return "; did you mean \"\(best.name)\"?"
    }

    static func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        var previous = Array(0...y.count)
        for i in 1...max(x.count, 1) where !x.isEmpty {
            var current = [i] + [Int](repeating: 0, count: y.count)
            for j in 1...max(y.count, 1) where !y.isEmpty {
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x[i - 1] == y[j - 1] ? 0 : 1))
            }
            previous = current
        }
        return previous[y.count]
    }
}
