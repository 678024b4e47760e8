import Apply
import DiskModel
import Failures
import Foundation
import SequenceModel
import WIM

/// unattend: a template with `${Var}` replaced by XML-escaped values, checked well-formed and
/// written to `Windows\Panther\unattend.xml`, where Windows Setup reads it at first boot. The
/// drivers injected on the volume are listed in PnpCustomizationsNonWinPE's DriverPaths.
/// The content is never logged: it holds passwords and product keys.
enum UnattendWriter {
    static let destination = "Windows/Panther/unattend.xml"

    static let minimal = """
        <?xml version="1.0" encoding="utf-8"?>
        <unattend xmlns="urn:schemas-microsoft-com:unattend">
        </unattend>

        """

    static func run(_ parameters: UnattendStep, _ step: Step, _ context: RunContext) throws {
        let template: String
        if let content = parameters.content {
            template = content
        } else if let location = parameters.template.map(context.substitute) {
            if ImageSteps.isURL(location) {
                template = String(decoding: try context.client.fetch(location, limit: 4 << 20), as: UTF8.self)
            } else {
                guard let data = FileManager.default.contents(atPath: location) else {
                    throw StepFailure("\(location): cannot read the unattend template", kind: .badInput)
                }
                template = String(decoding: data, as: UTF8.self)
            }
        } else {
            throw StepFailure("no unattend template", kind: .badInput)
        }
        var unknown: [String] = []
        let rendered = context.variables.substitute(template, escape: XMLText.escape) { unknown.append($0) }
        for name in Set(unknown).sorted() {
            context.bus.log("${\(name)} in the unattend template is not set: replaced by nothing", step: step, level: "warning")
        }
        try write(rendered, volume: parameters.target, context)
        context.bus.log("wrote \(destination) (\(rendered.utf8.count) bytes"
                        + (context.driverPaths[parameters.target].map { ", \($0.count) driver paths" } ?? "") + ")", step: step)
    }

    /// Writes `xml` (plus the volume's driver paths) and remembers it for later driver steps.
    static func write(_ xml: String, volume name: String, _ context: RunContext) throws {
        let volume = try context.volume(name)
        let final = try withDriverPaths(xml, context.driverPaths[name] ?? [], architecture: context.variables["Architecture"] ?? "amd64")
        do {
            let root = try XMLParser.parse(final)
            guard root.name == "unattend" || root.name.hasSuffix(":unattend") else {
                throw StepFailure("the unattend template's root element is <\(root.name)>, not <unattend>", kind: .badInput)
            }
        } catch let error as XMLSyntaxError {
            // Said without the text: it may hold secrets.
            throw StepFailure("the unattend file is not well-formed XML \(error)", kind: .badInput)
        }
        let files = try openVolumeFiles(volume.device)
        try files.write(Data(final.utf8), to: destination)
        try files.close()
        context.unattendWritten[name] = xml
    }

    /// Adds a PnpCustomizationsNonWinPE component listing `paths` (offlineServicing pass).
    static func withDriverPaths(_ xml: String, _ paths: [String], architecture: String) throws -> String {
        guard !paths.isEmpty else { return xml }
        let items = paths.enumerated().map { index, path in
            "        <PathAndCredentials wcm:action=\"add\" wcm:keyValue=\"imprint\(index + 1)\"><Path>\(XMLText.escape(path))</Path></PathAndCredentials>"
        }.joined(separator: "\n")
        if let existing = xml.range(of: "Microsoft-Windows-PnpCustomizationsNonWinPE"),
           let close = xml.range(of: "</DriverPaths>", range: existing.upperBound..<xml.endIndex) {
            return xml.replacingCharacters(in: close.lowerBound..<close.lowerBound, with: items + "\n      ")
        }
        let component = """
              <component name="Microsoft-Windows-PnpCustomizationsNonWinPE" processorArchitecture="\(architecture)" publicKeyToken="31bf3856ad364e35" language="neutral" versionScope="nonSxS" xmlns:wcm="http://schemas.microsoft.com/WMIConfig/2002/State">
                <DriverPaths>
            \(items)
                </DriverPaths>
              </component>

            """
        if let pass = xml.range(of: #"<settings\s+pass\s*=\s*"offlineServicing"\s*>"#, options: .regularExpression) {
            return xml.replacingCharacters(in: pass.upperBound..<pass.upperBound, with: "\n" + component)
        }
        guard let end = xml.range(of: "</unattend>", options: .backwards) else {
            throw StepFailure("the unattend file has no </unattend> to add the driver paths before", kind: .badInput)
        }
        return xml.replacingCharacters(in: end.lowerBound..<end.lowerBound,
                                       with: "  <settings pass=\"offlineServicing\">\n" + component + "  </settings>\n")
    }
}
