import Foundation
import Hummingbird
import SequenceModel

/// iPXE scripts: the agent for a machine to be deployed, its disk for one that is done.
extension ImprintServer {
    func bootScript(_ request: Request, mac: String?) -> Response {
        let base = publicURL(request)
        var lines = ["#!ipxe"]
        if let mac {
            // A per-machine script (chained as /boot/${netX/mac}.ipxe) says which MAC it was made for.
            lines.append("# for \(mac.filter { $0.isHexDigit || $0 == ":" || $0 == "-" })")
        } else {
            // The machine's own script first: a deployed machine is sent back to its disk there.
            // If it cannot be fetched, this one boots the agent all the same.
            lines.append("chain --replace --autofree \(base)/boot/${netX/mac}.ipxe || echo Imprint: no per-machine script, booting the agent")
        }
        lines += [
            "kernel \(base)/boot/files/vmlinuz initrd=initrd \(configuration.kernelArguments) imprint.agent imprint.server=\(base)",
            "initrd \(base)/boot/files/initrd",
            "boot",
        ]
        return JSON.raw(Data((lines.joined(separator: "\n") + "\n").utf8), contentType: "text/plain; charset=utf-8")
    }

    /// `/boot/{mac}.ipxe`: the agent, unless the machine with that MAC is deployed (deploy once,
    /// as WDS does): then iPXE exits and the firmware boots the next device, its disk.
    func machineBootScript(_ request: Request, mac: String) async throws -> Response {
        // iPXE percent-encodes the colons of ${netX/mac} in the URL.
        let wanted = Self.normalizedMAC(mac.removingPercentEncoding ?? mac)
        if let machine = try await storage.machines().first(where: { $0.macs.contains { Self.normalizedMAC($0) == wanted } }),
           let done = try await finishedDeployment(machineID: machine.id) {
            let lines = [
                "#!ipxe",
                "# for \(mac.filter { $0.isHexDigit || $0 == ":" || $0 == "-" })",
                "echo Imprint: this machine was deployed (\(Self.scriptSafe(done.sequenceName)), \(done.ended ?? done.created)): starting it from its disk.",
                "echo Imprint: to image it again, choose Deploy again on the dashboard.",
                "sleep 3",
                "exit",
            ]
            return JSON.raw(Data((lines.joined(separator: "\n") + "\n").utf8), contentType: "text/plain; charset=utf-8")
        }
        return bootScript(request, mac: mac.removingPercentEncoding ?? mac)
    }

    static func normalizedMAC(_ mac: String) -> String { mac.lowercased().replacingOccurrences(of: "-", with: ":") }

    /// A name shown by iPXE's echo: its settings syntax (`${...}`) and line breaks taken out.
    static func scriptSafe(_ text: String) -> String {
        String(text.filter { $0 != "$" && $0 != "\n" && $0 != "\r" }.prefix(80))
    }

    /// The succeeded deployment that makes this machine done, or nil when it is to be deployed:
    /// its newest deployment did not succeed, or an administrator asked for another one since.
    func finishedDeployment(machineID: String) async throws -> Deployment? {
        guard let latest = try await storage.latestDeployment(machineID: machineID), latest.state == .succeeded else { return nil }
        if let requested = try await storage.redeployRequested(machineID: machineID), requested > latest.created { return nil }
        return latest
    }
}
