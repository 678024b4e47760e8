import ArgumentParser

@main
struct Imprint: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "imprint",
        abstract: "Put Windows images onto machines from Linux.",
        version: "0.1.0",
        subcommands: [WimCommand.self, DiskCommand.self, SequenceCommand.self, RunCommand.self, AgentCommand.self, MediaCommand.self, BootCommand.self,
                      DistributionPointCommand.self, MulticastCommand.self]
    )
}

struct WimCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wim",
        abstract: "Read, verify, extract and apply WIM files.",
        subcommands: [WimInfo.self, WimDir.self, WimVerify.self, WimExtract.self, WimApply.self, WimCapture.self,
                      WimAppend.self, WimDelete.self, WimUpdate.self, WimExport.self, WimOptimize.self, WimSplit.self, WimJoin.self]
    )
}
