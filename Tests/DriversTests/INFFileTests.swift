import Foundation
import Testing
import TestSupport
@testable import Drivers

@Suite struct INFFileTests {
    let amd64 = TargetOS(architecture: .amd64)

    @Test func versionStringsContinuationsAndQuotes() throws {
        let inf = try INFFile(text: Fixtures.nicINF(), path: "/share/e1d.inf")
        #expect(inf.encoding == .utf8)
        #expect(inf.version.signature == "$WINDOWS NT$")
        #expect(inf.version.deviceClass == "Net")
        #expect(inf.version.classGUID == "{4d36e972-e325-11ce-bfc1-08002be10318}")
        #expect(inf.version.provider == "Intel")
        #expect(inf.version.catalogFile == "e1d.cat")
        #expect(inf.version.driverDate == DriverDate(year: 2023, month: 7, day: 14))
        #expect(inf.version.driverVersion == DriverVersion(parts: [12, 19, 1, 37]))

        let install = try #require(inf.section("e15b8.10.0.1.16299"))  // names ignore case
        #expect(install.line("AddReg")?.values == ["e1d.reg", "Copper.reg", "WakeOnLan.reg"])
        #expect(install.value("Characteristics") == "0x84")
        #expect(install.value("*IfType") == "6")
        let reg = try #require(inf.section("e1d.reg"))
        #expect(reg.lines[1].values == ["HKR", "Ndi", "HelpText", "0", "Quote \"inside\", fully sure"])
        #expect(reg.lines[2].values.last == "100%")
        let disk = try #require(inf.section("SourceDisksNames")?.line("1"))
        #expect(disk.values == ["Intel(R) Networking Install Disk; not a comment", "", "", ""])
        let expectedLine = try #require(Fixtures.nicINF().split(separator: "\n", omittingEmptySubsequences: false)
            .firstIndex { $0.hasPrefix("1 = %DiskId1%,,,\"\"") })
        #expect(disk.lineNumber == expectedLine + 1)
    }

    @Test func decoratedModelsFollowTheTargetBuild() throws {
        let inf = try INFFile(text: Fixtures.nicINF(), path: "/share/e1d.inf")
        let intel = try #require(inf.manufacturers.first)
        #expect(intel.name == "Intel")
        #expect(intel.decorations == ["NTamd64.10.0...16299", "NTamd64.10.0...26100"])
        #expect(try inf.modelsSection(for: intel, target: amd64) == "Intel.NTamd64.10.0...16299")
        #expect(try inf.modelsSection(for: intel, target: TargetOS(architecture: .amd64, build: 26100)) == "Intel.NTamd64.10.0...26100")
        // Windows 10 1703 is older than every decoration, and there is no undecorated section.
        #expect(try inf.modelsSection(for: intel, target: TargetOS(architecture: .amd64, build: 15063)) == nil)
        #expect(try inf.modelsSection(for: intel, target: TargetOS(architecture: .x86)) == nil)

        let models = try inf.models(for: amd64)
        #expect(models.map(\.description) == ["Intel(R) Ethernet Connection (2) I219-LM", "Intel(R) Ethernet Connection (2) I219-LM",
                                               "Intel(R) Ethernet Connection (10) I219-LM"])
        #expect(models[1].hardwareID == "PCI\\VEN_8086&DEV_15B8&SUBSYS_08611028")
        #expect(models[1].installSection == "E15B8.10.0.1.16299")
        #expect(models[1].compatibleIDs.isEmpty)
    }

    @Test func decorationPrecedence() throws {
        let text = """
        [Version]
        Signature="$WINDOWS NT$"
        [Manufacturer]
        Contoso = Contoso, NTamd64, NTamd64.10.0...16299, NTx86, NT.6.1
        [Contoso]
        Plain = Inst, PCI\\VEN_1234&DEV_0001
        [Contoso.NTamd64]
        Amd64 = Inst, PCI\\VEN_1234&DEV_0001
        [Contoso.NTamd64.10.0...16299]
        Win10 = Inst, PCI\\VEN_1234&DEV_0001
        [Contoso.NTx86]
        X86 = Inst, PCI\\VEN_1234&DEV_0001
        [Contoso.NT.6.1]
        AnyArch = Inst, PCI\\VEN_1234&DEV_0001
        [Inst]
        """
        let inf = try INFFile(text: text, path: "contoso.inf")
        func chosen(_ target: TargetOS) throws -> String? { try inf.models(for: target).first?.description }
        #expect(try chosen(amd64) == "Win10")
        #expect(try chosen(TargetOS(architecture: .amd64, build: 10240)) == "Amd64")
        #expect(try chosen(TargetOS(architecture: .x86)) == "X86")
        #expect(try chosen(TargetOS(architecture: .arm64)) == "AnyArch")
        let undecorated = try INFFile(text: text.replacingOccurrences(of: ", NT.6.1", with: ""), path: "contoso.inf")
        #expect(try undecorated.models(for: TargetOS(architecture: .arm64)).first?.description == "Plain")
    }

    @Test func copyFilesAndSourceDisks() throws {
        let inf = try INFFile(text: Fixtures.nicINF(), path: "/share/e1d.inf")
        #expect(try inf.copiedFiles(installSection: "E15B8.10.0.1.16299", architecture: .amd64)
            == ["e1d68x64.sys", "e1dcoin_src.dll", "e1dmsg.dll"])
        #expect(inf.sourceFile("e1dcoin_src.dll", architecture: .amd64).relativePath == "x64/coinst/e1dcoin_src.dll")
        #expect(inf.sourceFile("e1d68x64.sys", architecture: .x86).relativePath == "e1d68x64.sys")
        #expect(try inf.requiredFiles(for: amd64).map(\.relativePath)
            == ["e1d.cat", "x64/e1d68x64.sys", "x64/coinst/e1dcoin_src.dll", "x64/e1dmsg.dll"])
    }

    @Test func encodings() throws {
        let utf16 = Fixtures.utf16LEWithBOM(Fixtures.cardReaderINF)
        let withBOM = try INFFile(bytes: [UInt8](utf16), path: "RtsPer.inf")
        #expect(withBOM.encoding == .utf16LE)
        #expect(withBOM.version.provider == "Realtek Semiconductor Corp.")  // from [Strings.0409]
        #expect(try withBOM.models(for: amd64).first?.description == "Realtek PCIE CardReader")
        #expect(try withBOM.copiedFiles(installSection: "RTSPER", architecture: .amd64) == ["RtsPer.sys"])

        let noBOM = try INFFile(bytes: [UInt8](utf16.dropFirst(2)), path: "RtsPer.inf")
        #expect(noBOM.encoding == .utf16LENoBOM)
        #expect(noBOM.version.driverVersion == DriverVersion(parts: [10, 0, 22000, 21355]))

        let utf8BOM = try INFFile(bytes: [0xEF, 0xBB, 0xBF] + Array("[Strings]\nA = \"Café\"\n[Version]\nProvider=%A%\n".utf8), path: "a.inf")
        #expect(utf8BOM.encoding == .utf8BOM)
        #expect(utf8BOM.version.provider == "Café")

        // 0xE9 alone is not UTF-8: Latin-1/Windows-1252 as Windows' ANSI code page reads it;
        // 0x99 is the trademark sign only in Windows-1252.
        let ansi = try INFFile(bytes: Array("[Version]\nProvider=\"Soci".utf8) + [0xE9, 0x99] + Array("\"\n".utf8), path: "b.inf")
        #expect(ansi.encoding == .windows1252)
        #expect(ansi.version.provider == "Socié™")
    }

    @Test func toleratesWhatWindowsTolerates() throws {
        let text = """
        stray line before any section
        [Version]
        Signature="$WINDOWS NT$"
        Provider = First
        Provider = Second
        [SomethingUnknown]
        whatever, 1, 2
        [version]
        Class = Merged
        [Strings]
        """
        let inf = try INFFile(text: text, path: "t.inf")
        #expect(inf.version.provider == "First")
        #expect(inf.version.deviceClass == "Merged")
        #expect(inf.section("SomethingUnknown")?.lines.first?.values == ["whatever", "1", "2"])
        #expect(INFFile.substitute("%unknown% and %%", [:]) == "%unknown% and %")
    }

    @Test func errorsNameFileAndLine() throws {
        func error(_ text: String) -> INFError? {
            do {
                let inf = try INFFile(text: text, path: "/drivers/bad.inf")
                _ = try inf.models(for: amd64)
                return nil
            } catch let error as INFError {
                return error
            } catch {
                return nil
            }
        }
        let quote = error("[Version]\nSignature=\"$WINDOWS NT$\"\nProvider=\"Contoso ; unterminated\n")
        #expect(quote == INFError(path: "/drivers/bad.inf", line: 3, message: "unterminated quoted string"))
        #expect(quote?.description == "/drivers/bad.inf:3: unterminated quoted string")

        let header = error("[Version]\n\n[Manufacturer\n")
        #expect(header?.line == 3)

        let missing = error("[Version]\n[Manufacturer]\n; comment\nContoso = Contoso, NTamd64\n")
        #expect(missing?.line == 4)
        #expect(missing?.message.contains("[Contoso.NTamd64]") == true)

        let date = error("[Version]\nDriverVer = 2023-07-14,1.0\n")
        #expect(date?.line == 2)

        let install = try INFFile(text: "[Manufacturer]\nC=C\n[C]\nDev = NoSuchInstall, PCI\\VEN_1234\n", path: "x.inf")
        #expect(throws: INFError.self) { try install.requiredFiles(for: amd64) }
    }
}
